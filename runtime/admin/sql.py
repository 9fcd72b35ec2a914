"""SQL introspection: ``POST /query`` on the admin API (README "SQL introspection").

A query runs on an in-memory DuckDB database built for it: the tables it names are loaded from
the partition stores (the partitions this node applies read locally, the others asked of a node
that applies them over the internal port), then the query runs there. The engine has no file or
network access and its settings are locked, and only one SELECT (``WITH ...`` included) is
accepted. Store reads and the engine run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import decimal
import json
import re
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from aiohttp import web

from partition_processor.tables import KeyValueReader
from runtime.admin.sql_formats import (
    ARROW_MEDIA_TYPE,
    TRUNCATED_HEADER,
    UnknownFormat,
    arrow_stream,
    csv_text,
    fetch_arrow,
    negotiate,
)
from runtime.admin.sql_tables import (
    COLUMNS,
    PARTITION_TABLES,
    Row,
    TooManyRows,
    deployment_lookup,
    metadata_rows,
    partition_rows,
)
from runtime.http_errors import error_response
from runtime.http_limits import read_body_or_error
from runtime.internal import InternalClient, InternalRoutes, PeerError, RejectedRequest
from runtime.metadata import Registry

if TYPE_CHECKING:
    # Imported when a query runs: the engine and Arrow cost a node about 55 MiB of memory
    # at import, and most nodes seldom answer a query.
    import duckdb
    import pyarrow as pa

ROWS_PATH = "/internal/sql-rows"
_T = TypeVar("_T")


class RowsRequest(msgspec.Struct, frozen=True):
    """Ask a node for the rows of ``tables`` in ``partitions`` (all of which it applies)."""

    tables: list[str]
    partitions: list[int]
    budget: int


class RowsAnswer(msgspec.Struct, frozen=True):
    rows: dict[str, list[list[Any]]]


class QueryError(Exception):
    """A query refused or failed: answered with ``status`` and the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Placement:
    """Where each partition's rows are: here, or on which nodes.

    ``applied_here()`` is the one question "which partitions does this node apply" (today every
    node applies every partition; with replica sets, its replicas); ``replicas(p)`` the other
    nodes that apply ``p``, in the order to ask them.
    """

    def __init__(
        self,
        applied_here: Callable[[], frozenset[int]],
        replicas: Callable[[int], list[str]],
    ) -> None:
        self.applied_here = applied_here
        self.replicas = replicas


_TABLE_WORDS = re.compile(r"[a-z_][a-z0-9_]*")


def tables_named(query: str) -> list[str]:
    """The introspection tables a query may read (a word that is a table's name): only those
    are loaded. A column or alias spelled like a table only loads that table in vain."""
    words = set(_TABLE_WORDS.findall(query.lower()))
    return sorted(name for name in COLUMNS if name in words)


def check_read_only(query: str) -> None:
    """One SELECT statement (``WITH`` and ``VALUES`` parse as one), nothing else."""
    import duckdb

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(400, str(exc)) from exc
    if len(statements) != 1:
        raise QueryError(400, f"send exactly one statement, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QueryError(400, "only read-only queries (SELECT, WITH ... SELECT) are allowed")


def _cell(value: Any) -> Any:
    """A result value as JSON (bytes as base64, times as ISO strings, decimals as strings)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, datetime.date | datetime.time | datetime.timedelta):
        return str(value)
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return [_cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _cell(v) for k, v in value.items()}
    return value


class Limits(msgspec.Struct, frozen=True):
    """What one query may use (``NodeConfig.sql_*``)."""

    result_rows: int
    memory_mb: int = 256
    # One engine thread: a query must not take the cores the node's event loop needs.
    threads: int = 1


class Interrupt:
    """Stops a query running in another thread: its statement now, and any it would start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: duckdb.DuckDBPyConnection | None = None
        self.interrupted = False

    def attach(self, connection: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            self._connection = connection

    def check(self) -> None:
        if self.interrupted:
            raise QueryError(400, "the query was interrupted")

    def __call__(self) -> None:
        with self._lock:
            self.interrupted = True
            if self._connection is not None:
                self._connection.interrupt()


def run_query(
    query: str,
    tables: dict[str, list[Row]],
    limits: Limits,
    interrupt: Interrupt | None = None,
) -> tuple[list[str], list[dict[str, Any]], bool]:
    """Run ``query`` over ``tables`` in a fresh in-memory engine (blocking: call it in a
    thread): the columns, up to ``limits.result_rows`` rows as JSON values, and whether more
    were left off."""
    return _run(query, tables, limits, interrupt, _fetch_json)


def run_query_arrow(
    query: str,
    tables: dict[str, list[Row]],
    limits: Limits,
    interrupt: Interrupt | None = None,
) -> tuple[pa.Table, bool]:
    """As ``run_query``, the result as an Arrow table (typed columns)."""
    return _run(query, tables, limits, interrupt, fetch_arrow)


def _fetch_json(
    con: duckdb.DuckDBPyConnection, query: str, max_rows: int
) -> tuple[list[str], list[dict[str, Any]], bool]:
    cursor = con.execute(query)
    fetched = cursor.fetchmany(max_rows + 1)
    description = cursor.description or []
    names = [d[0] for d in description]
    json_columns = {i for i, d in enumerate(description) if str(d[1]).upper() == "JSON"}
    result: list[dict[str, Any]] = []
    for raw in fetched[:max_rows]:
        row: dict[str, Any] = {}
        for i, name in enumerate(names):
            value = raw[i]
            if i in json_columns and isinstance(value, str):
                value = json.loads(value)
            row[name] = _cell(value)
        result.append(row)
    return names, result, len(fetched) > max_rows


def _run(
    query: str,
    tables: dict[str, list[Row]],
    limits: Limits,
    interrupt: Interrupt | None,
    fetch: Callable[[duckdb.DuckDBPyConnection, str, int], _T],
) -> _T:
    import duckdb

    interrupt = interrupt or Interrupt()
    config = {
        # No file or network access (read_csv, read_text, COPY, ATTACH, httpfs...), no
        # extension installed or loaded: a query sees the introspection tables only.
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "memory_limit": f"{limits.memory_mb}MB",
        "threads": limits.threads,
    }
    con = duckdb.connect(":memory:", config=config)  # type: ignore[arg-type]
    interrupt.attach(con)
    try:
        for name, rows in tables.items():
            columns = COLUMNS[name]
            ddl = ", ".join(f'"{column}" {kind}' for column, kind in columns)
            con.execute(f"CREATE TABLE {name} ({ddl})")
            if rows:
                # One list parameter per column, unnested together: executemany costs a
                # statement per row (about 1.5 ms), this a few ms for thousands of rows.
                unnested = ", ".join(
                    f"unnest(${i + 1}::{kind}[])" for i, (_, kind) in enumerate(columns)
                )
                con.execute(
                    f"INSERT INTO {name} SELECT {unnested}",
                    [list(column) for column in zip(*rows, strict=True)],
                )
        con.execute("SET lock_configuration = true")
        interrupt.check()  # (the loading took the whole time)
        try:
            return fetch(con, query, limits.result_rows)
        except duckdb.Error as exc:
            raise QueryError(400, str(exc)) from exc
    finally:
        con.close()


class SqlQueries:
    """``POST /query`` and the ``/internal/sql-rows`` route a node's peers ask."""

    def __init__(
        self,
        store: KeyValueReader,
        registry: Registry,
        placement: Placement,
        *,
        partitions: int,
        node_id: str,
        scan_rows_max: int,
        result_rows_max: int,
        body_timeout_s: float,
        timeout_s: float = 30.0,
        memory_mb: int = 256,
        max_body_bytes: int,
        client: InternalClient | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._placement = placement
        self._partitions = partitions
        self._node_id = node_id
        self._scan_rows_max = scan_rows_max
        self._limits = Limits(result_rows_max, memory_mb)
        self._timeout_s = timeout_s
        self._body_timeout_s = body_timeout_s
        self._max_body_bytes = max_body_bytes
        self._client = client

    def install(self, app: web.Application) -> None:
        app.router.add_post("/query", self._query)

    def add_internal_route(self, routes: InternalRoutes) -> None:
        routes.add(ROWS_PATH, self._serve_rows)

    async def _query(self, request: web.Request) -> web.StreamResponse:
        body = await read_body_or_error(request, self._body_timeout_s, self._max_body_bytes)
        if isinstance(body, web.Response):
            return body
        try:
            fields = msgspec.json.decode(body, type=dict[str, str])
        except msgspec.DecodeError:
            fields = {}
        query = fields.get("query")
        if not query:
            return error_response(
                400, 'send a JSON body {"query": "SELECT ...", "format": "json|csv|arrow"}'
            )
        try:
            form = negotiate(request.headers.get("accept", ""), fields.get("format"))
        except UnknownFormat as exc:
            return error_response(400, str(exc))
        try:
            if form == "arrow":
                table, truncated = await self.query_arrow(query)
                return web.Response(
                    body=arrow_stream(table),
                    content_type=ARROW_MEDIA_TYPE,
                    headers={TRUNCATED_HEADER: str(truncated).lower()},
                )
            columns, rows, truncated = await self.query(query)
        except QueryError as exc:
            return error_response(exc.status, exc.message)
        if form == "csv":
            return web.Response(
                text=csv_text(columns, rows),
                content_type="text/csv",
                headers={TRUNCATED_HEADER: str(truncated).lower()},
            )
        return web.json_response({"columns": columns, "rows": rows, "truncated": truncated})

    async def query(self, query: str) -> tuple[list[str], list[dict[str, Any]], bool]:
        """Run a read-only query over the cluster's tables (see the module docstring)."""
        return await self._bounded(query, run_query)

    async def query_arrow(self, query: str) -> tuple[pa.Table, bool]:
        """As ``query``, the result as an Arrow table."""
        return await self._bounded(query, run_query_arrow)

    async def _bounded(
        self,
        query: str,
        run: Callable[[str, dict[str, list[Row]], Limits, Interrupt], _T],
    ) -> _T:
        check_read_only(query)
        names = tables_named(query)
        tables = await self._gather([n for n in names if n in PARTITION_TABLES])
        for name in names:
            if name not in PARTITION_TABLES:
                tables[name] = metadata_rows(self._registry, name)
        interrupt = Interrupt()
        running = asyncio.ensure_future(
            asyncio.to_thread(run, query, tables, self._limits, interrupt)
        )
        try:
            return await asyncio.wait_for(asyncio.shield(running), self._timeout_s)
        except TimeoutError:
            # A thread cannot be cancelled: the engine is interrupted, and its thread ends.
            interrupt()
            await asyncio.gather(running, return_exceptions=True)
            raise QueryError(
                400, f"the query ran longer than {self._timeout_s:g} s (--sql-timeout-ms)"
            ) from None

    async def _gather(self, names: list[str]) -> dict[str, list[Row]]:
        """Every row of the partition tables ``names``: local partitions read here, the rest
        asked of one node applying them each."""
        tables: dict[str, list[Row]] = {name: [] for name in names}
        if not names:
            return tables
        here = self._placement.applied_here()
        remote = [p for p in range(self._partitions) if p not in here]
        local = await asyncio.to_thread(self._read_local, names, sorted(here), self._scan_rows_max)
        for name, rows in local.items():
            tables[name].extend(rows)
        for name, rows in (await self._remote(names, remote)).items():
            tables[name].extend(rows)
        if sum(len(r) for r in tables.values()) > self._scan_rows_max:
            raise QueryError(413, f"the query reads more than {self._scan_rows_max} rows")
        return tables

    async def _remote(self, names: list[str], partitions: list[int]) -> dict[str, list[Row]]:
        """The rows of ``partitions`` from other nodes: each partition asked of its first
        replica, and of the next one when a node cannot answer (unreachable, not applying it)."""
        out: dict[str, list[Row]] = {name: [] for name in names}
        failed: dict[str, str] = {}  # node -> why it could not answer
        pending = partitions
        while pending:
            by_node: dict[str, list[int]] = {}
            for partition in pending:
                by_node.setdefault(self._pick(partition, failed), []).append(partition)
            answers = await asyncio.gather(
                *(self._ask(node, names, ps) for node, ps in by_node.items()),
                return_exceptions=True,
            )
            pending = []
            for (node, asked), answer in zip(by_node.items(), answers, strict=True):
                if isinstance(answer, QueryError) and answer.status == 503:
                    failed[node] = answer.message
                    pending += asked
                elif isinstance(answer, BaseException):
                    raise answer
                else:
                    for name, rows in answer.items():
                        out[name].extend(rows)
        return out

    def _pick(self, partition: int, failed: dict[str, str]) -> str:
        replicas = self._placement.replicas(partition)
        if self._client is not None:
            for node in replicas:
                if node not in failed:
                    return node
        why = "; ".join(failed[n] for n in replicas if n in failed) or "no node is known"
        raise QueryError(503, f"no node could answer for partition {partition}, retry: {why}")

    async def _ask(
        self, node: str, names: list[str], partitions: list[int]
    ) -> dict[str, list[Row]]:
        assert self._client is not None  # _pick checked
        request = RowsRequest(names, partitions, self._scan_rows_max)
        try:
            raw = await self._client.post(node, ROWS_PATH, msgspec.msgpack.encode(request))
        except PeerError as exc:
            status = 413 if exc.status == 413 else 503
            raise QueryError(status, f"node {node} could not answer: {exc}") from exc
        answer = msgspec.msgpack.decode(raw, type=RowsAnswer)
        return {name: [tuple(r) for r in rows] for name, rows in answer.rows.items()}

    def _read_local(
        self, names: list[str], partitions: list[int], budget: int
    ) -> dict[str, list[Row]]:
        deployment_of = deployment_lookup(self._registry)
        out: dict[str, list[Row]] = {}
        try:
            for name in names:
                out[name] = partition_rows(
                    self._store, name, partitions, budget=budget, deployment_of=deployment_of
                )
                budget -= len(out[name])
        except TooManyRows as exc:
            raise QueryError(413, str(exc)) from exc
        return out

    async def _serve_rows(self, body: bytes) -> bytes:
        try:
            request = msgspec.msgpack.decode(body, type=RowsRequest)
        except msgspec.DecodeError as exc:
            raise RejectedRequest(400, f"bad rows request: {exc}") from exc
        here = self._placement.applied_here()
        missing = sorted(set(request.partitions) - here)
        if missing:
            raise RejectedRequest(409, f"partitions {missing} are not applied on {self._node_id}")
        unknown = sorted(set(request.tables) - PARTITION_TABLES)
        if unknown:
            raise RejectedRequest(400, f"unknown tables {unknown}")
        budget = min(self._scan_rows_max, request.budget)
        try:
            rows = await asyncio.to_thread(
                self._read_local, request.tables, sorted(request.partitions), budget
            )
        except QueryError as exc:
            raise RejectedRequest(exc.status, exc.message) from exc
        answer = RowsAnswer({name: [list(r) for r in rs] for name, rs in rows.items()})
        return msgspec.msgpack.encode(answer)
