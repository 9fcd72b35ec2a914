"""A gRPC server a test leaves started does not hang a later test's teardown in grpc.aio's
completion queue shutdown (tests/support/grpc_runtime.py). The case runs pytest in a process of
its own: with the reference held, the later tests end at once; without it, one of them waits
until a timeout ends it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

LEAK_THEN_LAST_CHANNEL_GOES = """
import gc
from collections.abc import AsyncIterator

import grpc
import pytest

from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc
from tests.integration.runtime.scripted_endpoint import start_scripted_endpoint

LEAKED = []


async def test_a_leaves_a_started_server() -> None:
    server, _, _ = await start_scripted_endpoint()
    LEAKED.append(server)  # as a fixture whose stop never ran


async def test_b_during_which_it_is_collected() -> None:
    server, _, _ = await start_scripted_endpoint()
    LEAKED.clear()
    gc.collect()
    await server.stop(None)


@pytest.fixture
async def endpoint() -> AsyncIterator[int]:
    server, _, port = await start_scripted_endpoint()
    yield port
    await server.stop(None)
    del server
    gc.collect()  # the process's last grpc.aio object goes


async def _discover(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await endpoint_pb2_grpc.EndpointStub(channel).Discover(pb.DiscoverRequest())


async def test_c_fails_then_its_teardown_releases_the_last_server(endpoint: int) -> None:
    await _discover(endpoint)
    raise AssertionError("a test failing (pytest-timeout stops counting)")
"""


def test_a_leaked_grpc_server_fails_tests_but_hangs_none(tmp_path: Path) -> None:
    (tmp_path / "test_case.py").write_text(LEAK_THEN_LAST_CHANNEL_GOES)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "timeout = 20\nhard_timeout_grace = 10\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.grpc_runtime"]
        + ["-p", "tests.support.hard_timeout", "-p", "no:cacheprovider", "-q", "-rA"]
        + ["-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path)]
        + [str(tmp_path / "test_case.py")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    # Without the reference held, test_b or test_c waits in grpc.aio's completion queue shutdown
    # (PollerCompletionQueue.shutdown joining its poller thread) until a timeout ends it.
    assert "from pytest-timeout" not in output and "HARD TIMEOUT" not in output, output
    assert "PASSED test_case.py::test_a_leaves_a_started_server" in output
    assert "FAILED test_case.py::test_c_fails_then_its_teardown_releases_the_last_server" in output
