"""Issue 14 end to end: invocations stay on the deployment they started on, deployments are
removed only once drained (or with force), and an upgrade is checked against in-flight journals.

Real endpoints of three versions of one workflow (tests/e2e/apps/versions.py); the run waits on
its "go" promise mid-way, so a test decides when it resumes without depending on speed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from partition_processor.ids import object_partition_key, partition_of
from tests.e2e.conftest import Cluster
from tests.e2e.harness import ROOT, Client, Endpoint, Node
from tests.support.broker import unique_topic

APP = "tests.e2e.apps.versions:v1"


@pytest.fixture(scope="module", params=["local"])
def log_kind(request: pytest.FixtureRequest) -> str:
    # Pinning is a record of the partition's log like any other; one log kind keeps this lean.
    return str(request.param)


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def _deployment_of(client: Client, endpoint: Endpoint) -> dict[str, Any]:
    response = await client.admin("GET", "/deployments")
    assert response.status == 200, response.body
    [found] = [d for d in response.json()["deployments"] if d["uri"] == endpoint.uri]
    return found  # type: ignore[no-any-return]


async def _register(client: Client, endpoint: Endpoint) -> str:
    response = await client.admin("POST", "/deployments", {"uri": endpoint.uri})
    assert response.status == 201, response.body
    deployment_id: str = response.json()["id"]
    return deployment_id


async def _start_waiting(client: Client, key: str, path: Path) -> str:
    """Start a run of ``key`` and return its id once it waits at its promise (pinned)."""
    invocation_id = await client.send(f"/Upgrade/{key}/run", str(path))

    async def waiting() -> Any:
        status = await client.invocation(invocation_id)
        commands = [entry["command"] for entry in status["journal"]]
        return status if "get_promise('go')" in commands and status["deployment_id"] else None

    await client.wait_for(waiting)
    return invocation_id


async def _go(client: Client, key: str) -> None:
    response = await client.call(f"/Upgrade/{key}/go")
    assert response.status == 200, response.body


async def _sql_deployments(
    client: Client, invocation_ids: list[str]
) -> dict[str, tuple[str, bool]]:
    """``sys_invocation``'s deployment and pinned columns of each invocation, once all are in."""
    ids = ", ".join(f"'{i}'" for i in invocation_ids)
    query = f"SELECT id, deployment, pinned FROM sys_invocation WHERE id IN ({ids})"

    async def rows() -> Any:
        response = await client.admin("POST", "/query", {"query": query})
        assert response.status == 200, response.body
        found = response.json()["rows"]
        return found if len(found) == len(invocation_ids) else None

    return {row["id"]: (row["deployment"], row["pinned"]) for row in await client.wait_for(rows)}


def _endpoint(app: str, tmp_path: Path) -> Endpoint:
    endpoint = Endpoint(f"tests.e2e.apps.versions:{app}", tmp_path)
    endpoint.start()
    return endpoint


def _read_until(process: subprocess.Popen[str], text: str) -> str:
    """What ``process`` wrote to stderr up to and including ``text`` (or until it exits)."""
    assert process.stderr is not None
    seen = ""
    while text not in seen:
        char = process.stderr.read(1)
        if not char:
            raise AssertionError(f"exited before writing {text!r}: {seen!r}")
        seen += char
    return seen


def _cairn(node_admin: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *argv, "--admin", node_admin],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_a_started_invocation_finishes_on_its_deployment_after_an_upgrade(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    v1 = await _deployment_of(client, cluster.endpoint)
    old_path, new_path = tmp_path / "old.txt", tmp_path / "new.txt"
    old = await _start_waiting(client, "old", old_path)
    assert (await client.invocation(old))["deployment_id"] == v1["id"]
    # v2 changes the step order: replaying the old journal there would mismatch.
    v2_endpoint = _endpoint("v2", tmp_path)
    try:
        v2 = await _register(client, v2_endpoint)
        assert (await _deployment_of(client, cluster.endpoint))["pinned_invocations"] == 1
        new = await _start_waiting(client, "new", new_path)
        assert (await client.invocation(new))["deployment_id"] == v2
        assert _lines(new_path) == ["v2:two", "v2:one"]
        # SQL shows each invocation's own deployment: the one it is pinned to, and for one not
        # started yet (a run delayed by an hour) the one serving its service now.
        later = await client.call("/Upgrade/later/run/send?delay=1h", str(tmp_path / "later.txt"))
        assert later.status == 202, later.body
        later_id = later.json()["invocationId"]
        assert await _sql_deployments(client, [old, new, later_id]) == {
            old: (v1["id"], True),
            new: (v2, True),
            later_id: (v2, False),
        }
        # The pin is in the log: it holds across a kill -9 of the node.
        await cluster.node.restart()
        await _go(client, "old")
        result = await client.attach(old)
        assert result.status == 200 and result.json() == "v1", result.body
        assert _lines(old_path) == ["v1:one", "v1:two"]  # the v1 endpoint saw the resume
        await _go(client, "new")
        assert (await client.attach(new)).json() == "v2"
        listing = _cairn(cluster.node.admin, "deployments", "list", "--json")
        assert listing.returncode == 0, listing.stderr
        [row] = [d for d in json.loads(listing.stdout) if d["id"] == v1["id"]]
        assert row["uri"] == cluster.endpoint.uri and row["pinned_invocations"] == 0, row
    finally:
        v2_endpoint.stop()


async def test_removal_is_refused_while_pinned_then_drains_or_is_forced(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    v1 = (await _deployment_of(client, cluster.endpoint))["id"]
    first = await _start_waiting(client, "first", tmp_path / "first.txt")
    v2_endpoint = _endpoint("v2_compatible", tmp_path)
    try:
        await _register(client, v2_endpoint)
        refused = await client.admin("DELETE", f"/deployments/{v1}")
        assert refused.status == 409, refused.body
        assert refused.json()["pinned_invocations"] == 1
        bad = await client.admin("DELETE", f"/deployments/{v1}?force=maybe")
        assert bad.status == 400 and "force" in bad.json()["message"]
        drain = subprocess.Popen(  # noqa: ASYNC220 - runs beside the test, waited in a thread
            [sys.executable, "-m", "runtime.cli", "deployments", "drain", v1, "--interval",
             "0.2", "--admin", cluster.node.admin],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            # It reports the pinned invocation and waits (its progress goes to stderr).
            seen = await asyncio.to_thread(_read_until, drain, "1 pinned")
            assert drain.poll() is None
            await _go(client, "first")
            assert (await client.attach(first)).json() == "v1"
            out, err = await asyncio.to_thread(drain.communicate, timeout=60)
            err = seen + err
        finally:
            if drain.poll() is None:
                drain.kill()
        assert drain.returncode == 0, err
        assert f"drained and removed {v1}" in out
        assert "0 pinned" in err
        assert (await client.admin("GET", f"/deployments/{v1}")).status == 404

        # Registered again, v1 is the newest and takes new invocations; force removes it anyway.
        v1 = await _register(client, cluster.endpoint)
        doomed = await _start_waiting(client, "doomed", tmp_path / "doomed.txt")
        assert (await client.invocation(doomed))["deployment_id"] == v1
        forced = _cairn(cluster.node.admin, "deployments", "remove", v1, "--force")
        assert forced.returncode == 0, forced.stderr
        assert f"removed {v1} (1 pinned invocation failed)" in forced.stdout
        # Its pinned invocation ends at once with a clear failure instead of waiting.
        result = await client.attach(doomed)
        assert result.status == 573, result.body
        assert "was removed" in result.json()["message"]
        status = await client.invocation(doomed)
        assert status["status"] == "completed" and status["deployment_gone"] is True
        # New invocations of the service go to the deployment still serving it.
        later = await _start_waiting(client, "later", tmp_path / "later.txt")
        assert (await client.invocation(later))["deployment_gone"] is False
    finally:
        v2_endpoint.stop()


async def test_the_upgrade_check_flags_a_reordered_version_and_passes_a_compatible_one(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "run.txt"
    waiting = await _start_waiting(client, "k", path)
    v2_endpoint = _endpoint("v2", tmp_path)
    compatible_endpoint = _endpoint("v2_compatible", tmp_path)
    try:
        response = await client.admin(
            "POST", "/deployments", {"uri": v2_endpoint.uri, "dry_run": True}
        )
        assert response.status == 200, response.body
        report = response.json()
        assert report["compatible"] is False
        [handler] = [h for h in report["handlers"] if h["handler"] == "Upgrade/run"]
        assert handler["checked"] == 1 and handler["clean"] == 0
        [mismatch] = handler["mismatches"]
        assert mismatch["invocation_id"] == waiting and mismatch["entry_index"] == 1
        assert mismatch["expected"] == "run('one')" and mismatch["actual"] == "run('two')"
        assert _lines(path) == ["v1:one"]  # replay only: no step of v2 ran
        assert len(await _deployments(client)) == 1  # a dry run registers nothing

        check = _cairn(cluster.node.admin, "deployments", "check", v2_endpoint.uri)
        assert check.returncode == 1 and f"{waiting} entry 1" in check.stdout, check.stdout
        check = _cairn(cluster.node.admin, "deployments", "check", compatible_endpoint.uri)
        assert check.returncode == 0 and "Upgrade/run: 1 clean, 0 mismatch" in check.stdout
        assert _lines(path) == ["v1:one"]

        refused = _cairn(cluster.node.admin, "deployments", "register", v2_endpoint.uri, "--check")
        assert refused.returncode != 0 and "409" in refused.stderr, refused.stderr
        assert len(await _deployments(client)) == 1
        registered = _cairn(
            cluster.node.admin, "deployments", "register", compatible_endpoint.uri, "--check"
        )
        assert registered.returncode == 0, registered.stderr
        compatible = (await _deployment_of(client, compatible_endpoint))["id"]

        # The explicit move: the waiting run resumes on the compatible version.
        moved = _cairn(cluster.node.admin, "invocations", "move", waiting, compatible)
        assert moved.returncode == 0, moved.stderr
        assert (await client.invocation(waiting))["deployment_id"] == compatible
        unknown = await client.admin("PATCH", f"/invocations/{waiting}", {"deployment": "dp_x"})
        assert unknown.status == 404
        await _go(client, "k")
        assert (await client.attach(waiting)).json() == "v2c"
        assert _lines(path) == ["v1:one", "v2c:two", "v2c:three"]
    finally:
        v2_endpoint.stop()
        compatible_endpoint.stop()


async def _deployments(client: Client) -> list[Any]:
    response = await client.admin("GET", "/deployments")
    assert response.status == 200
    return response.json()["deployments"]  # type: ignore[no-any-return]


async def test_bad_version_requests_get_clear_errors(cluster: Cluster, client: Client) -> None:
    waiting = await client.send("/Upgrade/bad/run", "/dev/null")
    v1 = (await _deployment_of(client, cluster.endpoint))["id"]
    for body in (None, {}, {"deployment": 3}, {"deployment": v1, "extra": 1}, "[" * 5000):
        raw = body.encode() if isinstance(body, str) else None
        response = await client.request(
            "PATCH", f"{cluster.node.admin}/invocations/{waiting}", body, raw=raw
        )
        assert response.status == 400, (body, response.body)
        assert set(response.json()) >= {"code", "message"}
    not_an_id = await client.admin("PATCH", "/invocations/nope", {"deployment": v1})
    assert not_an_id.status == 400
    unknown = await client.admin("PATCH", f"/invocations/inv_{'0' * 48}", {"deployment": v1})
    assert unknown.status == 404
    assert (await client.admin("DELETE", "/deployments/dp_nope")).status == 404
    flags = await client.admin("POST", "/deployments", {"uri": cluster.endpoint.uri, "check": 1})
    assert flags.status == 400 and "dry_run" in flags.json()["message"]
    moved = await client.admin("PATCH", f"/deployments/{v1}/invocations", {"deployment": "dp_x"})
    assert moved.status == 404


async def _leading(client: Client) -> list[int]:
    response = await client.admin("GET", "/cluster")
    assert response.status == 200, response.body
    leading: list[int] = response.json()["leading"]
    return leading


async def test_the_pin_holds_across_failover(tmp_path: Path, kafka_bootstrap: str) -> None:
    """Two nodes on one Kafka: a v1 run waits on a partition node a leads, v2 is registered,
    a is killed -9; b takes the partition over and resumes the run on v1."""
    prefix, partitions = unique_topic("versions"), 4
    flags = ["--cluster", "--cluster-session-timeout-ms", "3000"]
    a, b = (
        Node(
            "kafka",
            tmp_path / name,
            kafka_bootstrap,
            partitions,
            extra=[*flags, "--node-name", name],
            topic_prefix=prefix,
        )
        for name in ("a", "b")
    )
    v1 = _endpoint("v1", tmp_path)
    v2 = _endpoint("v2", tmp_path)
    ca, cb = Client(a), Client(b)
    try:
        a.start()
        b.start()
        await ca.register(v1)

        async def split() -> bool:
            led_a, led_b = await _leading(ca), await _leading(cb)
            return bool(led_a) and bool(led_b) and sorted(led_a + led_b) == list(range(partitions))

        await ca.wait_for(split, timeout_s=60)
        led_by_a = await _leading(ca)
        key = next(
            k
            for k in (uuid.uuid4().hex[:10] for _ in range(1000))
            if partition_of(object_partition_key("Upgrade", k), partitions) in led_by_a
        )
        path = tmp_path / "run.txt"
        waiting = await _start_waiting(ca, key, path)
        await cb.register(v2)
        a.kill()

        async def b_leads_all() -> bool:
            return sorted(await _leading(cb)) == list(range(partitions))

        await cb.wait_for(b_leads_all, timeout_s=60)
        await _go(cb, key)
        result = await cb.attach(waiting)
        assert (result.status, result.json()) == (200, "v1"), result.body
        assert _lines(path) == ["v1:one", "v1:two"]
    finally:
        await ca.close()
        await cb.close()
        for name, child in (("a", a.process), ("b", b.process)):
            print(f"----- {name} -----\n{child.output()[-12000:]}")  # shown on failure
        for stoppable in (a, b, v1, v2):
            stoppable.stop()
