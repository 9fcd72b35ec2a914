"""Issue 11 item 3: every client-side CLI subcommand against a running node, as a table and with
``--json`` (the CLI is the real ``python -m runtime.cli`` process)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from runtime import cli
from tests.e2e.conftest import Cluster
from tests.e2e.harness import Client, Endpoint

APP = "tests.e2e.apps.workflows:app"


@pytest.fixture(scope="module")
def log_kind() -> str:
    # The CLI only talks to the admin API: one log kind is enough (the log is tested elsewhere).
    return "local"


def _run_main(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``cairn ARGV`` in this process (its real ``main``, over real HTTP to the node): starting a
    Python process per call would cost seconds each on a loaded machine. Tests elsewhere
    (test_workflows, test_security) run it as ``python -m runtime.cli``."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(argv)
        except SystemExit as exc:
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
                code = 1
            else:
                code = exc.code or 0
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


async def _cli(shared: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    # One at a time (redirect_stdout is process-wide); off the loop, which serves the client.
    return await asyncio.to_thread(_run_main, [*args, "--admin", shared.node.admin])


async def _ok(shared: Cluster, *args: str) -> str:
    done = await _cli(shared, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stdout


async def _json(shared: Cluster, *args: str) -> Any:
    return json.loads(await _ok(shared, *args, "--json"))


def _row(table: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first`` (rich draws ``│`` between)."""
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{table}")


async def test_services_deployments_and_state(
    shared: Cluster, client: Client, tmp_path: Path
) -> None:
    services = await _json(shared, "services", "list")
    locker = next(s for s in services if s["name"] == "Locker")
    assert locker["ty"] == "virtual_object"
    table = await _ok(shared, "services", "list")
    assert _row(table, "Locker")[1] == "virtual_object"
    assert "hold" in _row(table, "Locker")[4]

    described = await _json(shared, "services", "describe", "Locker")
    assert {h["name"] for h in described["handlers"]} >= {"hold", "add", "get"}
    table = await _ok(shared, "services", "describe", "Locker")
    assert _row(table, "get")[1] == "shared"
    unknown = await _cli(shared, "services", "describe", "NoSuchService")
    assert unknown.returncode == 1 and "failed with 404" in unknown.stderr

    deployments = await _json(shared, "deployments", "list")
    assert [d["uri"] for d in deployments] == [shared.endpoint.uri]
    deployment_id = deployments[0]["id"]
    assert _row(await _ok(shared, "deployments", "list"), deployment_id)[1] == shared.endpoint.uri
    # Registering the same endpoint again is idempotent: the same deployment.
    again = await _json(shared, "deployments", "register", shared.endpoint.uri)
    assert again["id"] == deployment_id
    registered = await _ok(shared, "deployments", "register", shared.endpoint.uri)
    assert registered.startswith(f"registered {deployment_id} at {shared.endpoint.uri}")
    # remove is a thin DELETE /deployments/{id}: an unknown id is the admin API's clear error.
    removed = await _cli(shared, "deployments", "remove", "dp_unknown")
    assert removed.returncode == 1 and "failed with" in removed.stderr
    assert "Traceback" not in removed.stderr
    # A second endpoint (other services) registered and removed, with --json and without.
    other = Endpoint("tests.e2e.apps.bulk:app", tmp_path)
    other.start()
    try:
        added = await _json(shared, "deployments", "register", other.uri)
        assert sorted(s["name"] for s in added["services"]) == ["Napper", "Sleeper"]
        gone = await _json(shared, "deployments", "remove", added["id"])
        assert gone == {"id": added["id"], "failed_invocations": 0}
        again = (await _ok(shared, "deployments", "register", other.uri)).split()[1]
        assert (await _ok(shared, "deployments", "remove", again)).strip() == f"removed {again}"
    finally:
        other.stop()
    assert [d["uri"] for d in await _json(shared, "deployments", "list")] == [shared.endpoint.uri]

    key = uuid.uuid4().hex
    assert (await client.call(f"/Locker/{key}/add", 5)).status == 200
    assert await _json(shared, "state", "get", "Locker", key) == {"count": 5}
    assert _row(await _ok(shared, "state", "get", "Locker", key), "count")[1] == "5"
    assert await _json(shared, "state", "get", "Locker", uuid.uuid4().hex) == {}


async def test_invocations_list_describe_and_manage(shared: Cluster, client: Client) -> None:
    key = uuid.uuid4().hex
    waiting = await client.send(f"/Signals/{key}/run", True)

    async def stage_reached() -> bool:
        response = await client.call(f"/Signals/{key}/stage")
        return response.status == 200 and response.json() == "waiting for go"

    await client.wait_for(stage_reached)
    listed = await _json(shared, "invocations", "list", "--service", "Signals")
    assert waiting in {row["id"] for row in listed}
    assert all(row["target"].startswith("Signals/") for row in listed)
    assert len(await _json(shared, "invocations", "list", "--limit", "1")) == 1
    status = (await client.invocation(waiting))["status"]
    by_status = await _json(shared, "invocations", "list", "--status", status)
    assert waiting in {row["id"] for row in by_status}
    assert {row["status"] for row in by_status} == {status}
    table = await _ok(shared, "invocations", "list", "--status", "completed")
    assert all(
        _row(table, line.split()[1])[1] == "completed"
        for line in table.splitlines()
        if line.startswith("│ inv_")
    )
    assert waiting not in table
    table = await _ok(shared, "invocations", "list", "--service", "Signals")
    assert _row(table, waiting)[1] in ("invoked", "suspended")
    assert _row(table, waiting)[2] == f"Signals/{key}/run"
    others = await _json(shared, "invocations", "list", "--service", "Greeter")
    assert waiting not in {row["id"] for row in others}

    described = await _json(shared, "invocations", "describe", waiting)
    assert described["journal"][-1]["command"] == "get_promise('go')"
    table = await _ok(shared, "invocations", "describe", waiting)
    assert "journal" in table
    assert _row(table, "4")[1] == "get_promise('go')"
    assert ["target", f"Signals/{key}/run"] in [line.split() for line in table.splitlines()]

    one = await _json(shared, "invocations", "cancel", waiting)
    assert one == {"id": waiting, "outcome": "cancel requested"}

    async def cancelled() -> bool:
        return (await client.invocation(waiting))["status"] == "completed"

    await client.wait_for(cancelled)
    purged = await _ok(shared, "invocations", "purge", waiting)
    assert purged.strip() == f"purged {waiting}"

    # In bulk: three held locks of a fresh service key set, matched by service and status.
    holders = [await client.send(f"/Locker/{uuid.uuid4().hex}/hold", None) for _ in range(3)]

    async def all_pending() -> bool:
        rows = await _json(shared, "invocations", "list", "--service", "Locker")
        running = {r["id"] for r in rows if r["status"] in ("invoked", "suspended")}
        return set(holders) <= running

    await client.wait_for(all_pending)
    # No terminal to confirm on and no --yes: refused, nothing killed.
    refused = await _cli(shared, "invocations", "kill", "--service", "Locker")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    statuses = {r["id"]: r["status"] for r in await _json(shared, "invocations", "list")}
    assert all(statuses[h] in ("invoked", "suspended") for h in holders)
    # Either filter alone is fine; an id with filters is an error, as is no id and no filter.
    both = await _cli(shared, "invocations", "kill", holders[0], "--service", "Locker")
    assert both.returncode == 1 and "not both" in both.stderr
    neither = await _cli(shared, "invocations", "kill", "--yes")
    assert neither.returncode == 1 and "needs an invocation id or a filter" in neither.stderr

    killed = await _json(shared, "invocations", "kill", "--service", "Locker", "--yes")
    outcomes = {r["id"]: r for r in killed}
    assert all(outcomes[h] == {"id": h, "outcome": "killed"} for h in holders)
    statuses = {r["id"]: r["status"] for r in await _json(shared, "invocations", "list")}
    assert all(statuses[h] == "completed" for h in holders)

    purged_all = await _ok(shared, "invocations", "purge", "--service", "Locker", "--yes")
    assert purged_all.strip().startswith("purged ") and "invocations" in purged_all
    remaining = {r["id"] for r in await _json(shared, "invocations", "list")}
    assert not set(holders) & remaining
    nothing = await _cli(shared, "invocations", "purge", "--service", "Locker", "--yes")
    assert nothing.returncode == 0 and "nothing to purge" in nothing.stderr
