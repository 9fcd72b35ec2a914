"""The private node-to-node port: only nodes with the cluster secret get in, the admin API has
no node-to-node routes, and ``--internal-bind 127.0.0.1:0`` is advertised with its real port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from runtime.internal.server import authorization
from tests.e2e.harness import Client, Node, cluster_secret_file


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
            for headers in ({}, {"authorization": authorization(b"not the secret" * 2)}):
                async with http.post(url, data=b"x", headers=headers) as response:
                    assert response.status == 401
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
        # The admin API no longer takes node-to-node requests.
        admin = await client.admin("POST", "/internal/responses", {})
        assert admin.status == 404, admin.body
    finally:
        await client.close()
