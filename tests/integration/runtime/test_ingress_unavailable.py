"""A log that refuses an append makes the ingress answer 503 (retry), not a 500 traceback."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from runtime.config import NodeConfig
from sdk.ports import free_port
from tests.integration.runtime.scripted_endpoint import start_scripted_endpoint
from tests.support.teardown import bounded, start_node_with_endpoint


async def test_a_closed_log_gets_503_with_a_reason(tmp_path: Path) -> None:
    async with AsyncExitStack() as teardown:
        server, _, port = await start_scripted_endpoint()
        teardown.push_async_callback(
            bounded, "the scripted endpoint's gRPC server stop", lambda: server.stop(None)
        )
        config = NodeConfig(
            data_dir=tmp_path / "node",
            ingress_bind=f"127.0.0.1:{free_port()}",
            admin_bind=f"127.0.0.1:{free_port()}",
            partitions=2,
        )
        node, session = await start_node_with_endpoint(teardown, config, port)
        await node._log.close()  # the log goes away under a running node
        async with session.post(f"http://{config.ingress_bind}/Counter/k/add", json=1) as r:
            assert r.status == 503
            body = await r.json()
            assert body["code"] == 503 and "retry" in body["message"]
        kill = f"http://{config.admin_bind}/invocations/inv_{'0' * 48}/kill"
        async with session.patch(kill) as r:
            assert r.status == 503
