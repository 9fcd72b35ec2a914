"""Fixtures shared by every test suite."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.broker import BrokerUnavailable, TansuBroker
from tests.support.s3 import S3Server

# A test still running well past its timeout ends the process, naming it (pytest-timeout alone
# leaves the teardown of a failed test unbounded): tests/support/hard_timeout.py. One grpc.aio
# reference held for the run, so that a gRPC server a test leaked cannot hang a later test in
# grpc.aio's completion queue shutdown: tests/support/grpc_runtime.py.
pytest_plugins = ["tests.support.hard_timeout", "tests.support.grpc_runtime"]

# No per-example deadline: speed is measured by benchmarks, never by tests, and a loaded CI
# machine must not fail a property test for being slow.
settings.register_profile("cairn", deadline=None)
settings.load_profile("cairn")

# `import restate` (code written for restate-sdk) resolves to the alias package in tests/compat.
COMPAT_PATH = str(Path(__file__).resolve().parent / "compat")
if COMPAT_PATH not in sys.path:
    sys.path.append(COMPAT_PATH)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Kafka-protocol broker (Tansu) shared by the session.

    Fails, never skips, when the broker is missing: the Kafka suites are part of the bar.
    """
    try:
        broker = TansuBroker.start(tmp_path_factory.mktemp("tansu"))
    except BrokerUnavailable as exc:
        pytest.fail(f"cannot start the test Kafka broker: {exc}", pytrace=False)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A local S3-compatible server (moto) shared by the session; tests make fresh buckets."""
    server = S3Server.start(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        server.stop()
