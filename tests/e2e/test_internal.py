"""The private node-to-node port: only nodes with the cluster secret get in, the admin API has
no node-to-node routes, and ``--internal-bind 127.0.0.1:0`` is advertised with its real port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from runtime.internal.server import authorization
from tests.e2e.harness import Client, Node, cluster_secret_file

# Every node-to-node route (runtime/node_serving.py ``serve_internal``).
ROUTES = (
    "/internal/responses",
    "/internal/read",
    "/internal/partitions",
    "/internal/invocations",
    "/internal/leader-changed",
)


@pytest.fixture
def node(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Node]:
    # The harness gives a cluster node --internal-bind 127.0.0.1:0 and the cluster's secret.
    started = Node("kafka", tmp_path / "a", kafka_bootstrap, 2, extra=["--cluster"])
    started.start()
    yield started
    print(started.process.output()[-5000:])  # shown when the test failed
    started.stop()


async def test_internal_port_needs_the_secret_and_admin_has_no_internal_routes(
    node: Node, tmp_path: Path
) -> None:
    client = Client(node)
    try:
        cluster = (await client.admin("GET", "/cluster")).json()
        internal = cluster["internal_address"]
        host, _, port = internal.removeprefix("http://").rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0  # the port bound, not the 0 asked for
        url = f"{internal}/internal/responses"
        secret = cluster_secret_file(tmp_path).read_bytes()
        async with aiohttp.ClientSession() as http:
            for path in ROUTES:
                for headers in ({}, {"authorization": authorization(b"not the secret" * 2)}):
                    async with http.post(internal + path, data=b"x", headers=headers) as response:
                        assert response.status == 401, path
                        body = await response.json()
                        assert body["code"] == 401 and "cluster secret" in body["message"]
            # Unknown paths too: nothing is routed before the secret is checked.
            async with http.post(f"{internal}/internal/other", data=b"") as response:
                assert response.status == 401
            # With the secret the route answers (a body that is no response is a 400).
            right = {"authorization": authorization(secret)}
            async with http.post(url, data=b"not msgpack", headers=right) as response:
                assert response.status == 400, await response.text()
                assert "not a response" in (await response.json())["message"]
            partitions = f"{internal}/internal/partitions"
            async with http.post(partitions, data=b"", headers=right) as response:
                assert response.status == 200, await response.text()
                view = await response.json(content_type=None)
                assert view["node"] == cluster["node"] and set(view["partitions"]) == {"0", "1"}
            for path in ("/internal/read", "/internal/invocations", "/internal/leader-changed"):
                async with http.post(internal + path, data=b"\xc1", headers=right) as response:
                    assert response.status == 400, (path, await response.text())
        # The admin API takes no node-to-node requests, forwarded reads included.
        for path in ROUTES:
            for method in ("GET", "POST"):
                admin = await client.admin(method, path, {} if method == "POST" else None)
                assert admin.status == 404, (method, path, admin.body)
    finally:
        await client.close()
