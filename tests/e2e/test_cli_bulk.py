"""Bulk ``cairn invocations cancel|kill|purge --where`` against a running node: the SQL filter
picks exactly the matching invocations, nothing happens without a confirmation, a bad filter is
a clear error, and every outcome is reported (README, CLI "Bulk actions")."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import Cluster
from tests.e2e.harness import Client
from tests.e2e.test_cli import _run_main

APP = "tests.e2e.apps.bulk:app"
HOUR_MS = 3_600_000
RUNNING = ("invoked", "suspended")


@pytest.fixture(scope="module")
def log_kind() -> str:
    return "local"  # the CLI only talks to the admin API


async def _cli(shared: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_run_main, [*args, "--admin", shared.node.admin])


def _process(shared: Cluster, args: list[str], stdin: int) -> subprocess.CompletedProcess[str]:
    """``python -m runtime.cli ARGS`` with ``stdin``: a terminal or not is what is tested."""
    command = [sys.executable, "-m", "runtime.cli", *args, "--admin", shared.node.admin]
    with subprocess.Popen(
        command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _with_terminal(
    shared: Cluster, args: list[str], answer: bytes
) -> subprocess.CompletedProcess[str]:
    """The command with a pseudo-terminal as stdin, on which ``answer`` is typed."""
    controller, terminal = os.openpty()
    try:
        os.write(controller, answer)
        return _process(shared, args, terminal)
    finally:
        os.close(terminal)
        os.close(controller)


async def _statuses(client: Client, ids: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for invocation_id in ids:
        response = await client.admin("GET", f"/invocations/{invocation_id}")
        out[invocation_id] = response.json()["status"] if response.status == 200 else "gone"
    return out


async def _start(client: Client, service: str, n: int, millis: int) -> list[str]:
    ids = [await client.send(f"/{service}/rest", millis) for _ in range(n)]

    async def all_running() -> bool:
        return all(s in RUNNING for s in (await _statuses(client, ids)).values())

    await client.wait_for(all_running)
    return ids


async def test_cancel_where_acts_on_exactly_the_matches(shared: Cluster, client: Client) -> None:
    sleepers = await _start(client, "Sleeper", 5, HOUR_MS)
    nappers = await _start(client, "Napper", 2, HOUR_MS)
    where = ["invocations", "cancel", "--where", "service = 'Sleeper'"]

    # No terminal and no --yes: refused (exit 2), nothing cancelled.
    refused = await asyncio.to_thread(_process, shared, where, subprocess.DEVNULL)
    assert refused.returncode == 2, refused.stderr
    assert "--yes" in refused.stderr and "nothing done" in refused.stderr
    # --json needs --yes too (it is for scripts: there is no one to ask).
    as_json = await asyncio.to_thread(_process, shared, [*where, "--json"], subprocess.DEVNULL)
    assert as_json.returncode == 2 and as_json.stdout == ""
    # On a terminal, the matches are shown and "n" (or anything but y) does nothing.
    declined = await asyncio.to_thread(_with_terminal, shared, where, b"n\n")
    assert declined.returncode == 2, declined.stderr
    assert "5 invocations match" in declined.stderr and "Proceed? [y/N]" in declined.stderr
    assert sleepers[0] in declined.stderr  # the first matches are listed
    # A condition that is not SQL: the engine's message, exit 1.
    bad = await _cli(shared, "invocations", "cancel", "--where", "service = ", "--yes")
    assert bad.returncode == 1 and "refused" in bad.stderr and "syntax error" in bad.stderr
    # A condition trying to reach past the filter is refused by the node (one read-only SELECT).
    sneaky = await _cli(
        shared, "invocations", "cancel", "--where", "true); DROP TABLE sys_invocation; (", "--yes"
    )
    assert sneaky.returncode == 1 and "refused" in sneaky.stderr
    assert all(s in RUNNING for s in (await _statuses(client, sleepers + nappers)).values())

    done = await _cli(shared, *where, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert sorted(r["id"] for r in results) == sorted(sleepers)
    assert all(set(r) == {"id", "outcome"} for r in results)
    assert {r["outcome"] for r in results} <= {"cancelled", "cancel requested"}

    async def cancelled() -> bool:
        return all(s == "completed" for s in (await _statuses(client, sleepers)).values())

    await client.wait_for(cancelled)
    assert all(s in RUNNING for s in (await _statuses(client, nappers)).values())
    # Nothing left to cancel: said so, exit 0.
    again = await _cli(shared, *where, "--yes")
    assert again.returncode == 0 and "nothing to cancel" in again.stderr

    # Purge the completed ones (the filter matches completed invocations only for purge).
    purged = await _cli(shared, "invocations", "purge", "--where", "service = 'Sleeper'", "--yes")
    assert purged.returncode == 0, purged.stderr
    summary = "purged 5 of 5 invocations (already completed: 0, not found: 0, failed: 0)"
    assert purged.stdout.strip().splitlines()[-1] == summary
    assert set((await _statuses(client, sleepers)).values()) == {"gone"}

    # --limit caps how many; the oldest first.
    first = await _cli(
        shared, "invocations", "kill", "--where", "target LIKE 'Napper/%'", "--limit", "1",
        "--yes", "--json",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == [{"id": nappers[0], "outcome": "killed"}]
    statuses = await _statuses(client, nappers)
    assert statuses[nappers[0]] == "completed" and statuses[nappers[1]] in RUNNING
    # On a terminal, "y" goes ahead, with a progress bar and a summary.
    typed = await asyncio.to_thread(
        _with_terminal, shared, ["invocations", "kill", "--service", "Napper"], b"y\n"
    )
    assert typed.returncode == 0, typed.stderr
    assert typed.stdout.strip().splitlines()[-1].startswith("killed 1 of 1 invocations")
    assert (await _statuses(client, nappers))[nappers[1]] == "completed"


async def test_every_outcome_is_reported(shared: Cluster, client: Client) -> None:
    """Invocations that completed or were purged between the selection and the action are
    "already completed" and "not found", not failures; the summary counts each kind."""
    ids = await _start(client, "Sleeper", 4, HOUR_MS)
    listed = ", ".join(f"'{i}'" for i in ids)
    command = [sys.executable, "-m", "runtime.cli", "invocations", "cancel", "--where"]
    command += [f"id IN ({listed})", "--admin", shared.node.admin]
    controller, terminal = os.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stderr is not None
        shown = (await asyncio.wait_for(process.stderr.readuntil(b"Proceed?"), 60)).decode()
        assert "4 invocations match" in shown
        # While the CLI waits for its answer: two end, one of them is purged as well.
        for invocation_id in ids[1:3]:
            killed = await client.admin("PATCH", f"/invocations/{invocation_id}/kill")
            assert killed.status == 200, killed.body
        purged = await client.admin("PATCH", f"/invocations/{ids[2]}/purge")
        assert purged.status == 200, purged.body
        os.write(controller, b"y\n")
        out_bytes, err_bytes = await asyncio.wait_for(process.communicate(), 60)
        out, err = out_bytes.decode(), err_bytes.decode()
    finally:
        os.close(terminal)
        os.close(controller)
    assert process.returncode == 0, err
    summary = "cancelled 2 of 4 invocations (already completed: 1, not found: 1, failed: 0)"
    assert out.strip().splitlines()[-1] == summary


async def test_failures_are_reported_and_exit_1(cluster: Cluster, client: Client) -> None:
    """A node that stops answering between the selection and the action: each invocation is
    a failure with its reason, the summary counts them, exit 1 (a node of its own: stopped)."""
    ids = await _start(client, "Napper", 2, HOUR_MS)
    command = [sys.executable, "-m", "runtime.cli", "invocations", "kill", "--service", "Napper"]
    command += ["--admin", cluster.node.admin]
    controller, terminal = os.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stderr is not None
        await asyncio.wait_for(process.stderr.readuntil(b"Proceed?"), 60)
        await asyncio.to_thread(cluster.node.stop)
        os.write(controller, b"y\n")
        out_bytes, err_bytes = await asyncio.wait_for(process.communicate(), 120)
    finally:
        os.close(terminal)
        os.close(controller)
    out, err = out_bytes.decode(), err_bytes.decode()
    assert process.returncode == 1, err
    assert out.strip().splitlines()[-1] == (
        "killed 0 of 2 invocations (already completed: 0, not found: 0, failed: 2)"
    )
    for invocation_id in ids:
        assert f"{invocation_id}: cairn: cannot reach the admin API" in err
