"""SQL introspection (``POST /query``) on one node, on the local log and on Kafka: every table,
with filters and joins, CSV, bad SQL and refused statements."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
import uuid
from typing import Any

import pytest

from tests.e2e.harness import Client

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
