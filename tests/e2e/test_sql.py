"""SQL introspection (``POST /query``) on one node, on the local log and on Kafka: every table,
with filters and joins, CSV, Arrow, bad SQL and refused statements."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.e2e.harness import Client
from tests.e2e.test_cli import _run_main

APP = "tests.e2e.apps.introspection:app"
pytestmark = pytest.mark.usefixtures("shared")


async def _query(client: Client, sql: str) -> list[dict[str, Any]]:
    response = await client.admin("POST", "/query", {"query": sql})
    assert response.status == 200, response.body
    rows: list[dict[str, Any]] = response.json()["rows"]
    return rows


async def _refused(client: Client, sql: str) -> str:
    response = await client.admin("POST", "/query", {"query": sql})
    assert response.status == 400, response.body
    body = response.json()
    assert body["code"] == 400
    message: str = body["message"]
    return message


async def test_every_table_with_filters_and_joins(client: Client) -> None:
    tag = uuid.uuid4().hex[:8]
    greeted = await client.call("/Greeter/greet", f"Ada-{tag}")
    assert greeted.status == 200, greeted.body
    greet_id = greeted.headers["x-restate-id"]
    added = await client.call(f"/Counter/{tag}-a/add", 5)
    assert added.status == 200, added.body

    # An object held by an awakeable, with a second call queued in its inbox.
    held = f"{tag}-held"
    hold_id = await client.send(f"/Counter/{held}/hold")

    async def pending() -> list[dict[str, Any]]:
        return await _query(
            client,
            f"SELECT value FROM state WHERE service = 'Counter' AND key = '{held}' "
            "AND state_key = 'pending'",
        )

    awakeable_id = (await client.wait_for(pending))[0]["value"]
    queued_id = await client.send(f"/Counter/{held}/add", 1)

    # A workflow waiting on its promise.
    flow = f"{tag}-flow"
    await client.send(f"/Approval/{flow}/run", "leave")

    async def waiting() -> list[dict[str, Any]]:
        return await _query(
            client,
            f"SELECT completed, waiters FROM sys_promise WHERE key = '{flow}' AND name = 'answer'",
        )

    assert (await client.wait_for(waiting)) == [{"completed": False, "waiters": 1}]

    # sys_invocation, filtered; joined with sys_journal in journal order.
    rows = await _query(
        client, f"SELECT id, status, target FROM sys_invocation WHERE id = '{greet_id}'"
    )
    assert rows == [{"id": greet_id, "status": "completed", "target": "Greeter/greet"}]
    # A completed invocation keeps no journal; the held one's, joined with its status.
    journal = await _query(
        client,
        "SELECT j.index, j.entry_type, j.name, j.completed FROM sys_invocation i "
        f"JOIN sys_journal j ON j.invocation_id = i.id WHERE i.id = '{hold_id}' ORDER BY j.index",
    )
    assert [r["entry_type"] for r in journal][:2] == ["input", "awakeable"]
    assert {"index": 2, "entry_type": "set_state", "name": "pending", "completed": False} in journal
    assert journal[1]["completed"] is False  # the awakeable is not resolved yet

    # state: the value as JSON and raw (base64 of the stored bytes).
    state = await _query(
        client,
        f"SELECT state_key, value, value_raw FROM state WHERE key = '{tag}-a'",
    )
    assert state == [{"state_key": "count", "value": 5, "value_raw": "NQ=="}]

    # sys_inbox joined with the queued invocation's status.
    inbox = await _query(
        client,
        "SELECT b.invocation_id, b.sequence_number, s.handler, s.status FROM sys_inbox b "
        f"JOIN sys_invocation s ON s.id = b.invocation_id WHERE b.key = '{held}'",
    )
    assert len(inbox) == 1 and inbox[0]["invocation_id"] == queued_id
    assert (inbox[0]["handler"], inbox[0]["status"]) == ("add", "inboxed")
    suspended = await _query(client, f"SELECT status FROM sys_invocation WHERE id = '{hold_id}'")
    assert suspended[0]["status"] in ("invoked", "suspended")

    # sys_service joined with sys_deployment; an aggregate over sys_invocation.
    services = await _query(
        client,
        "SELECT s.name, s.ty, d.uri FROM sys_service s JOIN sys_deployment d "
        "ON d.id = s.deployment_id ORDER BY s.name",
    )
    assert [s["name"] for s in services] == ["Approval", "Counter", "Greeter", "Steps"]
    assert {s["ty"] for s in services} == {"service", "virtual_object", "workflow"}
    counts = await _query(
        client,
        "SELECT service, count(*) AS n FROM sys_invocation "
        f"WHERE key LIKE '{tag}%' GROUP BY service ORDER BY service",
    )
    assert counts == [{"service": "Approval", "n": 1}, {"service": "Counter", "n": 3}]

    # Resolving lets the rows move: the promise completes with its value as JSON.
    answered = await client.call(f"/Approval/{flow}/answer", "granted")
    assert answered.status == 200, answered.body

    async def completed() -> list[dict[str, Any]]:
        return await _query(
            client,
            f"SELECT value FROM sys_promise WHERE key = '{flow}' AND completed",
        )

    assert (await client.wait_for(completed)) == [{"value": "granted"}]
    released = await client.call(f"/restate/awakeables/{awakeable_id}/resolve", "done")
    assert released.status == 202, released.body


async def test_csv_on_request(client: Client) -> None:
    response = await client.request(
        "POST",
        f"{client.node.admin}/query",
        {"query": "SELECT name, ty FROM sys_service ORDER BY name"},
        headers={"accept": "text/csv"},
    )
    assert response.status == 200, response.body
    assert response.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(response.body.decode())))
    assert table[0] == ["name", "ty"]
    assert ["Greeter", "service"] in table[1:]


async def query_arrow(client: Client, sql: str, **body: str) -> pa.Table:
    """The query's rows as an Arrow table, asked by the Accept header or, with ``format`` in
    ``body``, by the body."""
    headers = {} if body else {"accept": "application/vnd.apache.arrow.stream"}
    response = await client.request(
        "POST", f"{client.node.admin}/query", {"query": sql, **body}, headers=headers
    )
    assert response.status == 200, response.body
    assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert response.headers["x-cairn-truncated"] == "false"
    return pa.ipc.open_stream(response.body).read_all()


def as_json_values(table: pa.Table) -> list[dict[str, Any]]:
    """Arrow rows with their times as the JSON answer shows them (ISO-like strings)."""
    return [
        {
            k: str(v) if pa.types.is_timestamp(table.schema.field(k).type) and v else v
            for k, v in row.items()
        }
        for row in table.to_pylist()
    ]


# Ints, strings, a timestamp and nulls (a service call has no key; nothing has failed).
ARROW_QUERY = (
    "SELECT id, partition, service, key, attempt, last_failure_code, "
    "epoch_ms(created_ms) AS created FROM sys_invocation WHERE key LIKE '{tag}%' "
    "OR id = '{greet_id}' ORDER BY id"
)


async def test_arrow_on_request_equals_the_json_rows(client: Client) -> None:
    tag = uuid.uuid4().hex[:8]
    greeted = await client.call("/Greeter/greet", f"Ada-{tag}")
    assert greeted.status == 200, greeted.body
    for n in range(2):
        assert (await client.call(f"/Counter/{tag}-{n}/add", n)).status == 200
    query = ARROW_QUERY.format(tag=tag, greet_id=greeted.headers["x-restate-id"])
    rows = await _query(client, query)
    assert len(rows) == 3 and sum(r["key"] is None for r in rows) == 1
    table = await query_arrow(client, query)
    schema = table.schema
    assert pa.types.is_integer(schema.field("partition").type)
    assert pa.types.is_integer(schema.field("last_failure_code").type)
    assert pa.types.is_string(schema.field("service").type)
    assert pa.types.is_timestamp(schema.field("created").type)
    assert as_json_values(table) == rows
    # The body may ask for it too; the Accept header wins over the body.
    assert as_json_values(await query_arrow(client, query, format="arrow")) == rows
    as_csv = await client.request(
        "POST",
        f"{client.node.admin}/query",
        {"query": query, "format": "arrow"},
        headers={"accept": "text/csv"},
    )
    assert as_csv.status == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert len(list(csv.reader(io.StringIO(as_csv.body.decode())))) == 4
    by_body = await client.admin("POST", "/query", {"query": query, "format": "csv"})
    assert by_body.status == 200 and by_body.body == as_csv.body


async def test_an_unknown_format_is_refused(client: Client) -> None:
    response = await client.admin("POST", "/query", {"query": "SELECT 1", "format": "parquet"})
    assert response.status == 400, response.body
    assert response.json()["code"] == 400 and "parquet" in response.json()["message"]


async def test_bad_sql_gets_the_engines_message(client: Client) -> None:
    assert "syntax error" in (await _refused(client, "SELEC id FROM sys_invocation")).lower()
    assert "nope" in await _refused(client, "SELECT nope FROM sys_invocation")
    assert "sys_nothing" in await _refused(client, "SELECT * FROM sys_nothing")
    missing = await client.admin("POST", "/query", {"q": "SELECT 1"})
    assert missing.status == 400 and "query" in missing.json()["message"]


async def test_only_read_only_queries_without_file_access(client: Client) -> None:
    assert "read-only" in await _refused(client, "DELETE FROM state")
    assert "read-only" in await _refused(client, "COPY sys_service TO '/tmp/cairn-sql.csv'")
    assert "exactly one" in await _refused(client, "SELECT 1; SELECT 2")
    assert "disabled" in await _refused(client, "SELECT * FROM read_csv('/etc/hostname')")
    assert "disabled" in await _refused(client, "SELECT * FROM read_text('/etc/passwd')")
    assert "read-only" in await _refused(client, "ATTACH '/tmp/cairn-sql.db'")
    assert "read-only" in await _refused(client, "INSERT INTO state VALUES (0)")
    assert "exactly one" in await _refused(client, "SELECT 1; DROP TABLE state")
    # The data is not changed by a refused statement: the services are all still there.
    assert len(await _query(client, "SELECT name FROM sys_service")) == 4


def _cairn_sql(admin: str, *argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "runtime.cli", "sql", "--admin", admin, *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


async def test_cairn_sql_prints_a_table_or_json(client: Client) -> None:
    admin = client.node.admin
    query = "SELECT name, ty FROM sys_service WHERE name IN ('Counter', 'Greeter') ORDER BY name"
    shown = await asyncio.to_thread(_cairn_sql, admin, query)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["name", "ty"]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split() == ["Counter", "virtual_object"]
    assert lines[3].split() == ["Greeter", "service"]
    assert lines[4] == "(2 rows)"
    as_json = await asyncio.to_thread(_cairn_sql, admin, "--json", query)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == [
        {"name": "Counter", "ty": "virtual_object"},
        {"name": "Greeter", "ty": "service"},
    ]
    bad = await asyncio.to_thread(_cairn_sql, admin, "SELEC 1")
    assert bad.returncode != 0
    assert "400" in bad.stderr and "syntax error" in bad.stderr


async def test_cairn_sql_formats_and_output_file(client: Client, tmp_path: Path) -> None:
    admin = client.node.admin
    query = "SELECT name, revision FROM sys_service WHERE name IN ('Counter', 'Greeter') ORDER BY 1"
    want = await _query(client, query)

    async def cairn_sql(*argv: str) -> str:  # in this process: a process per call costs seconds
        done = await asyncio.to_thread(_run_main, ["sql", "--admin", admin, *argv, query])
        assert done.returncode == 0, done.stderr
        return done.stdout

    as_csv = await cairn_sql("--format", "csv")
    assert list(csv.DictReader(io.StringIO(as_csv))) == [
        {k: str(v) for k, v in row.items()} for row in want
    ]
    assert json.loads(await cairn_sql("--format", "json")) == want
    out = tmp_path / "services.arrow"
    assert await cairn_sql("--format", "arrow", "--output", str(out)) == ""
    assert pa.ipc.open_stream(out.read_bytes()).read_all().to_pylist() == want
    table_file = tmp_path / "services.txt"
    await cairn_sql("--output", str(table_file))
    assert table_file.read_text().splitlines()[-1] == "(2 rows)"
    # Arrow to a pipe; not to a terminal (it is binary).
    piped = await asyncio.to_thread(_cairn_sql_bytes, admin, "--format", "arrow", query)
    assert pa.ipc.open_stream(piped).read_all().to_pylist() == want
    terminal = await asyncio.to_thread(_cairn_sql_on_a_terminal, admin, "--format", "arrow", query)
    assert terminal.returncode == 1 and "--output" in terminal.stderr


def _cairn_sql_bytes(admin: str, *argv: str) -> bytes:
    command = [sys.executable, "-m", "runtime.cli", "sql", "--admin", admin, *argv]
    done = subprocess.run(command, capture_output=True, timeout=60, check=True)
    return done.stdout


def _cairn_sql_on_a_terminal(admin: str, *argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "runtime.cli", "sql", "--admin", admin, *argv]
    controller, terminal = os.openpty()
    try:
        return subprocess.run(
            command, stdout=terminal, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(terminal)
        os.close(controller)
