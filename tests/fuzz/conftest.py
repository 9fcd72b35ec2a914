"""A node (24 partitions, local log) and the poison app's endpoint, shared by a fuzz module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.fuzz.support import PARTITIONS


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = start_cluster(
        "tests.e2e.apps.poison:app",
        "local",
        tmp_path_factory.mktemp("fuzz"),
        None,
        partitions=PARTITIONS,
    )
    yield started
    stop_cluster(started)
