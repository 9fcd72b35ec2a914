"""``sdk.testing.TestEnvironment`` stops every part it started even when one fails to stop: the
node's failure is raised, and the endpoint stops serving and the data directory is removed all
the same."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sdk import Context, Service
from sdk.testing import TestEnvironment

pytestmark = pytest.mark.timeout(60)

greeter = Service("Greeter")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"hello {name}"


def _running(port: int, data: Path) -> tuple[bool, bool]:
    """Is the endpoint still serving on ``port``; is the data directory still there."""
    with socket.socket() as probe:
        serving = probe.connect_ex(("127.0.0.1", port)) == 0
    return serving, data.exists()


async def test_a_node_that_fails_to_stop_still_leaves_no_endpoint_or_directory_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environment = TestEnvironment(greeter)
    with pytest.raises(RuntimeError, match="the node would not stop"):
        async with environment as env:
            assert await env.client.call("Greeter", "greet", "ada") == "hello ada"
            node, endpoint, directory = env._node, env._endpoint, env._directory
            assert node is not None and endpoint is not None and directory is not None
            port, data = endpoint.port, Path(directory.name)
            real_stop = node.stop

            async def failing_stop() -> None:
                await real_stop()  # (stopped for real: this test leaks nothing)
                raise RuntimeError("the node would not stop")

            node.stop = failing_stop  # type: ignore[method-assign]
            assert _running(port, data) == (True, True)
    assert _running(port, data) == (False, False)
    assert "stopping the test environment: node failed" in caplog.text
