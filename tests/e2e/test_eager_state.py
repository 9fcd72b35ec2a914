"""Eager state (issue 10): the attempt's start carries the object's state, the SDK answers reads
from it, and a partial or disabled eager state gives the same answers through lazy reads, on
the first attempt and on a replay."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.e2e.harness import Client

APP = "tests.e2e.apps.eager:app"

EXPECTED = {
    "first": 40,
    "last": 40,
    "missing": None,
    "keys": ["k0", "k1", "k2", "k3", "k4"],
    # The store's order of state names (by length, then bytes), whoever answers.
    "keys_with_x": ["x", "k0", "k1", "k2", "k3", "k4"],
    "x": 1,
    "again": 1,
    "cleared": None,
    "keys_after": [],
    "attempts": 2,
}


# Default limit (all state eager), 150 bytes (three of the five entries of 44 bytes: partial),
# and 0 (every read lazy).
@pytest.fixture(scope="module", params=["default", "150", "0"])
def eager_node(
    request: pytest.FixtureRequest,
    log_kind: str,
    bootstrap: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    # A long coalescing window, so the appends counted below do not depend on timing.
    extra = ["--invoker-coalesce-ms", "5000"]
    if request.param != "default":
        extra += ["--eager-state-max-bytes", request.param]
    directory = tmp_path_factory.mktemp(f"eager-{request.param}")
    started = start_cluster(APP, log_kind, directory, bootstrap, extra=extra)
    yield started
    stop_cluster(started)


async def test_reads_see_the_same_state_eager_partial_or_lazy(eager_node: Cluster) -> None:
    client = Client(eager_node.node)
    try:
        key = uuid.uuid4().hex
        assert (await client.call(f"/Box/{key}/fill", 5)).status == 200
        response = await client.call(f"/Box/{key}/probe")
        assert response.status == 200, response.body
        assert response.json() == EXPECTED
        peek = await client.call(f"/Box/{key}/peek")
        assert peek.status == 200 and peek.json() == []
        # A second object: its reads see its own state only.
        other = uuid.uuid4().hex
        assert (await client.call(f"/Box/{other}/fill", 1)).status == 200
        assert (await client.call(f"/Box/{other}/peek")).json() == ["k0"]
    finally:
        await client.close()


async def _metric(client: Client, name: str) -> float:
    response = await client.admin("GET", "/metrics")
    for line in response.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def test_effects_nobody_waits_for_share_the_next_append(
    eager_node: Cluster, request: pytest.FixtureRequest
) -> None:
    """get (answered from the eager state), set, set 300 ms later, output and end: one append of
    the invoker (within --invoker-coalesce-ms); with every read lazy, the get is appended (and
    answered) first: two."""
    client = Client(eager_node.node)
    try:
        appends = await _metric(client, "cairn_invoker_appends_total")
        effects = await _metric(client, "cairn_invoker_effects_total")
        key = uuid.uuid4().hex
        for expected in (1, 2):
            response = await client.call(f"/Box/{key}/writes", 300)
            assert response.status == 200 and response.json() == expected, response.body
        lazy = request.node.callspec.params["eager_node"] == "0"
        assert await _metric(client, "cairn_invoker_appends_total") - appends == (4 if lazy else 2)
        # Five effects per invocation (get, set, set, output, end) plus its Pinned record (the
        # deployment it runs on: README "Versions"), which rides in its first append.
        assert await _metric(client, "cairn_invoker_effects_total") - effects == 12
        state = await client.admin("GET", f"/services/Box/state/{key}")
        assert state.json()["state"] == {"n": 2, "m": 1}, state.body
    finally:
        await client.close()


def test_a_negative_limit_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "server", "--data-dir", str(tmp_path),
         "--eager-state-max-bytes", "-1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "--eager-state-max-bytes must be at least 0" in result.stderr
