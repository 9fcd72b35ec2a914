"""Fixtures of the end-to-end suites: a node and an endpoint per test (``cluster``) or shared by
a module (``shared``), on the local log and on Kafka. A module names its app with ``APP``."""

from __future__ import annotations

import gc
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import Client, Endpoint, Node


@pytest.fixture(autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """After each test, a collection: a child process's ``Popen`` that nothing holds any more
    while the process still runs (a node or endpoint a failed start left behind) warns here, so
    that the test which leaked it fails at its teardown, not a later one that happens to
    collect garbage."""
    yield
    gc.collect()


@dataclass
class Cluster:
    node: Node
    endpoint: Endpoint

    def logs(self) -> str:
        return (
            f"----- node log (tail) -----\n{self.node.process.output()[-20000:]}\n"
            f"----- endpoint log (tail) -----\n{self.endpoint.process.output()[-20000:]}"
        )


def _register(node: Node, endpoint: Endpoint) -> None:
    request = urllib.request.Request(
        f"{node.admin}/deployments",
        data=json.dumps({"uri": endpoint.uri}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status in (200, 201)


def start_cluster(
    app: str, log_kind: str, directory: Path, kafka_bootstrap: str | None, **node_options: object
) -> Cluster:
    node = Node(log_kind, directory / "data", kafka_bootstrap, **node_options)  # type: ignore[arg-type]
    endpoint = Endpoint(app, directory)
    endpoint.start()
    try:
        node.start()
        _register(node, endpoint)
    except BaseException:
        print(Cluster(node, endpoint).logs())
        node.kill()
        endpoint.kill()
        raise
    return Cluster(node, endpoint)


def stop_cluster(cluster: Cluster) -> None:
    print(cluster.logs())  # pytest shows it only when the test failed
    try:
        cluster.endpoint.stop()
    finally:
        cluster.node.stop()  # (each bounded: SIGTERM, then SIGKILL after 15 s)


@pytest.fixture(scope="module", params=["local", "kafka"])
def log_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def bootstrap(log_kind: str, request: pytest.FixtureRequest) -> str | None:
    return str(request.getfixturevalue("kafka_bootstrap")) if log_kind == "kafka" else None


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest, log_kind: str, bootstrap: str | None, tmp_path: Path
) -> Iterator[Cluster]:
    """A fresh node and endpoint for one test (for tests that kill or restart them)."""
    started = start_cluster(request.module.APP, log_kind, tmp_path, bootstrap)
    yield started
    stop_cluster(started)


@pytest.fixture(scope="module")
def shared(
    request: pytest.FixtureRequest,
    log_kind: str,
    bootstrap: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """One node and endpoint for all non-destructive tests of a module (per log)."""
    started = start_cluster(
        request.module.APP, log_kind, tmp_path_factory.mktemp("shared"), bootstrap
    )
    yield started
    stop_cluster(started)


@pytest.fixture
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    """An HTTP client for the test's cluster (``cluster`` if the test uses it, else ``shared``)."""
    name = "cluster" if "cluster" in request.fixturenames else "shared"
    target: Cluster = request.getfixturevalue(name)
    http = Client(target.node)
    yield http
    await http.close()
