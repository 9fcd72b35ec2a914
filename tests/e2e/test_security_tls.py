"""TLS end to end (README, Security): a node serving its ingress and admin over HTTPS, and a
deployment at ``grpcs://`` / ``https://`` that requires the node's client certificate (mutual
TLS), with certificates made by the test. The local log only (the edges are the same for both)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import pytest

from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc
from tests.e2e.harness import READY_TIMEOUT_S, ROOT, Endpoint, Node
from tests.support.certs import CertAuthority

APP = "tests.e2e.apps.security:app"


@dataclass
class TlsSetup:
    node: Node
    endpoint: Endpoint
    ca: CertAuthority
    ingress: str
    admin: str
    context: ssl.SSLContext


def _wait_ready(node: Node, url: str, context: ssl.SSLContext) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not node.process.alive():
            raise RuntimeError(f"node exited:\n{node.process.output()[-5000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"node not ready:\n{node.process.output()[-5000:]}")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSetup]:
    directory = tmp_path_factory.mktemp("tls")
    ca = CertAuthority(directory)
    endpoint_cert = ca.issue("endpoint")
    node_cert = ca.issue("node")
    client_cert = ca.issue("node-client", client=True)
    endpoint = Endpoint(APP, directory)
    endpoint.process.argv += [
        "--tls-cert-file",
        str(endpoint_cert.cert),
        "--tls-key-file",
        str(endpoint_cert.key),
        "--tls-client-ca-file",  # mutual TLS: only the node's client certificate gets in
        str(ca.cert),
    ]
    endpoint.start()
    node = Node(
        "local",
        directory / "data",
        extra=[
            "--tls-cert-file",
            str(node_cert.cert),
            "--tls-key-file",
            str(node_cert.key),
            "--deployment-ca-file",
            str(ca.cert),
            "--deployment-client-cert-file",
            str(client_cert.cert),
            "--deployment-client-key-file",
            str(client_cert.key),
        ],
    )
    context = ssl.create_default_context(cafile=str(ca.cert))
    ingress = f"https://127.0.0.1:{node.ingress_port}"
    admin = f"https://127.0.0.1:{node.admin_port}"
    node.process.spawn()
    try:
        _wait_ready(node, f"{ingress}/restate/health", context)
    except BaseException:
        node.kill()
        endpoint.kill()
        raise
    yield TlsSetup(node, endpoint, ca, ingress, admin, context)
    print(node.process.output()[-20000:], endpoint.process.output()[-5000:])
    endpoint.stop()
    node.stop()


@pytest.fixture
async def http(tls: TlsSetup) -> AsyncIterator[aiohttp.ClientSession]:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls.context),
        timeout=aiohttp.ClientTimeout(total=60),
    )
    yield session
    await session.close()


async def _json(session: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with session.request(method, url, json=body) as response:
        return response.status, await response.json()


async def test_a_tls_deployment_behind_a_tls_node(
    tls: TlsSetup, http: aiohttp.ClientSession
) -> None:
    port = tls.endpoint.port
    for uri in (f"grpcs://127.0.0.1:{port}", f"https://127.0.0.1:{port}"):
        status, body = await _json(http, "POST", f"{tls.admin}/deployments", {"uri": uri})
        assert status == 201, body
        status, answer = await _json(http, "POST", f"{tls.ingress}/Greeter/greet", "Ada")
        assert (status, answer) == (200, "Hello, Ada!")
    # The same endpoint in plaintext: refused at registration, in our words.
    status, body = await _json(
        http, "POST", f"{tls.admin}/deployments", {"uri": f"http://127.0.0.1:{port}"}
    )
    assert status == 400 and "cannot reach a Cairn endpoint" in body["message"], body


async def test_plaintext_clients_get_nothing(tls: TlsSetup) -> None:
    async with aiohttp.ClientSession() as plain:
        for url in (f"http://127.0.0.1:{tls.node.ingress_port}/restate/health",):
            with pytest.raises(aiohttp.ClientError):
                async with plain.get(url) as response:
                    await response.read()
    # The endpoint wants a client certificate from the CA: TLS alone does not get in.
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.ca.cert.read_bytes())
    async with grpc.aio.secure_channel(f"127.0.0.1:{tls.endpoint.port}", credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await endpoint_pb2_grpc.EndpointStub(channel).Discover(pb.DiscoverRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_cli_reaches_an_https_admin_with_its_ca(tls: TlsSetup) -> None:
    env = {**os.environ, "CAIRN_ADMIN_CA_FILE": str(tls.ca.cert)}
    listed = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "services", "list", "--admin", tls.admin],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    untrusted = subprocess.run(
        [sys.executable, "-m", "runtime.cli", "services", "list", "--admin", tls.admin],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "CAIRN_ADMIN_CA_FILE"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert untrusted.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    assert "Traceback" not in untrusted.stderr
