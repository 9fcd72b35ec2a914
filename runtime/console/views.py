"""What each console page shows, gathered from what the admin API already has: the placement
(``ClusterAdmin``), the SQL engine (``SqlQueries``, which fans out over the cluster), the admin
reads of one invocation or one object's state (forwarded to a replica when this node does not
apply the partition), the metadata and the metrics. No page reads a store directly, except the
``invocation-links`` read below, which is served like the admin's own reads."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from partition_processor.ids import (
    InvalidInvocationId,
    object_partition_key,
    parse_partition_key,
    partition_of,
)
from partition_processor.journal import Call, Input, OneWayCall, Output, SetState, Success
from partition_processor.tables import KeyValueReader, read_journal, read_status
from runtime.admin.placement import ClusterAdmin
from runtime.admin.sql import QueryError, SqlQueries
from runtime.admin.state import value_json
from runtime.console.state_edit import shown_entries
from runtime.http_errors import error_response
from runtime.metadata import Registry
from runtime.metrics import REGISTRY

PAGE_ROWS = 50
STATUSES = ("scheduled", "inboxed", "invoked", "suspended", "backing_off", "completed")
LINKS_READ = "invocation-links"
# Journal commands that wait for a completion (the others are done once journaled).
_AWAITING = frozenset(
    {
        "run",
        "call",
        "sleep",
        "awakeable",
        "get_promise",
        "peek_promise",
        "get_state",
        "get_state_keys",
        "complete_promise",
    }
)


class PageError(Exception):
    """A page that cannot be shown: its HTTP status and the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _literal(value: str) -> str:
    """A SQL string literal (quotes doubled: the engine's only escape)."""
    return "'" + value.replace("'", "''") + "'"


def pretty(value: Any) -> str:
    """A JSON value as indented text (the template escapes it)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def age(now_ms: int, then_ms: int | None) -> str:
    """How long ago ``then_ms`` was, in its largest unit (``42s``, ``3m``, ``5h``, ``2d``)."""
    if not then_ms:
        return ""
    seconds = max(0, (now_ms - then_ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def utc(ms: int | None) -> str:
    """A store timestamp (ms since the epoch) as UTC time to the millisecond."""
    if not ms:
        return ""
    stamp = datetime.fromtimestamp(ms / 1000, UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d} UTC"


def now_ms() -> int:
    return int(time.time() * 1000)


def json_or_none(body: bytes) -> Any:
    """A JSON answer's value (None: empty or not JSON)."""
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _json_body(response: web.Response) -> Any:
    assert isinstance(response.body, bytes)
    return json_or_none(response.body)


# -- overview


async def overview(cluster: ClusterAdmin, registry: Registry, sql: SqlQueries) -> dict[str, Any]:
    view = await cluster.cluster_view()
    partitions = []
    for row in view["partitions"]:
        applied: dict[str, int | None] = row["applied"]
        known = [a for a in applied.values() if a is not None]
        head = max(known, default=None)
        replicas = [
            {
                "node": node,
                "role": "leader" if node == row["leader"] else "standby",
                "applied": position,
                # Behind the most advanced replica (records a standby has yet to apply).
                "lag": head - position if head is not None and position is not None else None,
            }
            for node, position in applied.items()
        ]
        partitions.append({**row, "replicas": replicas})
    nodes = sorted({view["node"], *view["nodes"]} | {n for p in partitions for n in p["applied"]})
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    counts_error = None
    try:
        _, rows, _ = await sql.query(
            "SELECT status, count(*) AS n FROM sys_invocation GROUP BY status"
        )
        counts.update({str(r["status"]): int(r["n"]) for r in rows})
    except QueryError as exc:
        counts_error = exc.message
    return {
        "node": view["node"],
        "nodes": [
            {"id": n, "here": n == view["node"], "unreachable": n in view["unreachable"]}
            for n in nodes
        ],
        "replication": view["replication"],
        "partitions": partitions,
        "deployments": registry.deployments(),
        "services": registry.services(),
        "counts": counts,
        "counts_error": counts_error,
    }


# -- invocations


@dataclass
class Filters:
    service: str = ""
    handler: str = ""
    key: str = ""
    status: str = ""
    page: int = 0
    problems: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Filters:
        filters = cls(
            service=query.get("service", "").strip(),
            handler=query.get("handler", "").strip(),
            key=query.get("key", "").strip(),
            status=query.get("status", "").strip(),
        )
        raw_page = query.get("page", "0")
        if raw_page.isascii() and raw_page.isdigit():
            filters.page = int(raw_page)
        else:
            filters.problems.append(f"page must be a number, got {raw_page!r}")
        if filters.status and filters.status not in STATUSES:
            filters.problems.append(f"unknown status {filters.status!r}")
            filters.status = ""
        return filters

    def query_string(self, page: int) -> str:
        fields = {
            "service": self.service,
            "handler": self.handler,
            "key": self.key,
            "status": self.status,
        }
        return urlencode({**{k: v for k, v in fields.items() if v}, "page": page})


async def invocations(sql: SqlQueries, filters: Filters) -> dict[str, Any]:
    where = [
        f"{column} = {_literal(value)}"
        for column, value in (
            ("service", filters.service),
            ("handler", filters.handler),
            ("key", filters.key),
            ("status", filters.status),
        )
        if value
    ]
    query = (
        "SELECT id, service, handler, key, status, created_ms, modified_ms, retry_count, "
        "last_failure FROM sys_invocation"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY created_ms DESC, id LIMIT {PAGE_ROWS + 1} OFFSET {filters.page * PAGE_ROWS}"
    )
    try:
        _, rows, _ = await sql.query(query)
    except QueryError as exc:
        return {"rows": [], "more": False, "error": exc.message}
    now = now_ms()
    for row in rows:
        row["age"] = age(now, row["created_ms"])
    return {"rows": rows[:PAGE_ROWS], "more": len(rows) > PAGE_ROWS, "error": None}


# -- one invocation


def links_here(store: KeyValueReader, partition: int, args: Mapping[str, str]) -> web.Response:
    """What the admin's invocation read does not say, for the console's timeline: each entry's
    type, name and value, the invocations it called, its callers and its retries."""
    invocation_id = args["id"]
    status = read_status(store, partition, invocation_id)
    if status is None:
        return error_response(404, f"invocation {invocation_id!r} not found")
    entries = []
    for index, entry in enumerate(read_journal(store, partition, invocation_id)):
        command = entry.command
        tag = str(command.__struct_config__.tag)
        name = getattr(command, "name", None) or getattr(command, "key", None)
        value: Any = None
        match command:
            case Input(value=raw) | SetState(value=raw):
                value = value_json(raw)
            case Call(argument=raw) | OneWayCall(argument=raw):
                value = value_json(raw)
            case Output(result=Success(value=raw)):
                value = value_json(raw)
        callee = getattr(command, "invocation_id", None) if tag != "cancel_invocation" else None
        entries.append(
            {
                "index": index,
                "type": tag,
                "name": name if isinstance(name, str) else None,
                "target": command.target.service + "/" + command.target.handler
                if isinstance(command, Call | OneWayCall)
                else None,
                "callee": callee or None,
                "value": value,
                "awaits": tag in _AWAITING,
            }
        )
    return web.json_response(
        {
            "retry_count": status.retry_count,
            "callers": sorted({c.invocation_id for c in status.callers}),
            "invoke_at_ms": status.invoke_at_ms,
            "entries": entries,
        }
    )


async def invocation(cluster: ClusterAdmin, partitions: int, invocation_id: str) -> dict[str, Any]:
    try:
        partition = partition_of(parse_partition_key(invocation_id), partitions)
    except InvalidInvocationId as exc:
        raise PageError(400, str(exc)) from exc
    args = {"id": invocation_id}
    answers = [await cluster.read(partition, name, args) for name in ("invocation", LINKS_READ)]
    for answer in answers:
        if answer.status != 200:
            body = _json_body(answer) or {}
            raise PageError(answer.status, str(body.get("message", f"HTTP {answer.status}")))
    status, links = (_json_body(a) for a in answers)
    timeline = []
    for entry, link in zip(status["journal"], links["entries"], strict=False):
        completion = entry["completion"]
        state = "completed" if entry["completed"] else "waiting" if link["awaits"] else "done"
        timeline.append(
            {
                **link,
                "state": state,
                "value_json": pretty(link["value"]) if link["value"] is not None else None,
                "completion_json": pretty(completion) if completion is not None else None,
            }
        )
    now = now_ms()
    return {
        **status,
        "partition": partition,
        "retry_count": links["retry_count"],
        "callers": links["callers"],
        "timeline": timeline,
        "age": age(now, status["created_ms"]),
        "result_json": pretty(status["result"]) if status["result"] is not None else None,
        "invoke_at_ms": links["invoke_at_ms"],
    }


# -- state


async def state_keys(sql: SqlQueries, service: str) -> tuple[list[str], str | None]:
    """The keys of ``service`` that have state (cluster-wide), or why they are not known."""
    try:
        _, rows, truncated = await sql.query(
            f"SELECT DISTINCT key FROM state WHERE service = {_literal(service)} ORDER BY key"
        )
    except QueryError as exc:
        return [], exc.message
    return [str(r["key"]) for r in rows], "more keys than shown" if truncated else None


async def object_state(
    cluster: ClusterAdmin, partitions: int, service: str, key: str
) -> dict[str, Any]:
    """A key's state entries as the edit form shows them, with the state's version (the
    admin's state read, in its ``format=bytes`` form: a value that is not JSON is kept)."""
    partition = partition_of(object_partition_key(service, key), partitions)
    args = {"service": service, "key": key, "format": "bytes"}
    answer = await cluster.read(partition, "state", args)
    body = _json_body(answer) or {}
    if answer.status != 200:
        raise PageError(answer.status, str(body.get("message", f"HTTP {answer.status}")))
    return {"entries": shown_entries(body["state"]), "version": body.get("version")}


# -- subscriptions


def subscriptions(registry: Registry) -> list[dict[str, Any]]:
    """Each subscription with the lag of the source partitions this node consumes (the
    ``cairn_subscription_lag`` gauge: each node reports the partitions it consumes)."""
    lags: dict[str, list[dict[str, Any]]] = {}
    for metric in REGISTRY.collect():
        if metric.name != "cairn_subscription_lag":
            continue
        for sample in metric.samples:
            labels = sample.labels
            lags.setdefault(labels["subscription"], []).append(
                {"topic": labels["topic"], "partition": labels["partition"], "lag": sample.value}
            )
    return [
        {
            "id": s.id,
            "source": s.source,
            "sink": s.sink,
            "options": msgspec.to_builtins(s.options),
            "lag": sorted(lags.get(s.id, []), key=lambda r: (r["topic"], int(r["partition"]))),
        }
        for s in registry.subscriptions()
    ]
