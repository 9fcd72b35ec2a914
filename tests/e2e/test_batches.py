"""Batched stream messages end to end (README, Endpoints): a node against an endpoint that does
not batch (``--no-message-batches``, as endpoints before batches), then the same endpoint
upgraded in place to one that does, with an invocation in flight across the upgrade.

Every other e2e suite runs with batches on both sides (the default), kill -9 tests included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.capabilities import start_cluster, upgrade_in_place
from tests.e2e.conftest import Cluster, stop_cluster
from tests.e2e.harness import Client


@pytest.fixture
def unbatched(tmp_path: Path) -> Iterator[Cluster]:
    started = start_cluster(tmp_path, ["--no-message-batches"])
    yield started
    stop_cluster(started)


async def test_an_endpoint_without_batches_works_and_upgrades_in_place(
    unbatched: Cluster, tmp_path: Path
) -> None:
    client = Client(unbatched.node)
    try:
        await upgrade_in_place(unbatched, client, tmp_path, flag="message_batches", prefix="nb")
    finally:
        await client.close()
