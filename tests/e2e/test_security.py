"""Security end to end (README, Security): bearer tokens on admin and ingress (with rotation and
the CLI), a node that signs its calls and an endpoint that requires it, secret headers that reach
the handler but never the log or admin views, registration errors, revisions and ``force``.

The local log only: what is tested is the node's edges, the same for both logs (TLS:
``test_security_tls.py``)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc
from runtime.security.identity import generate_key_pair
from sdk.ports import free_port
from tests.e2e.harness import ROOT, Client, Endpoint, Node, Response

APP = "tests.e2e.apps.security:app"
ADMIN_OLD, ADMIN_NEW, INGRESS = "admin-old-7f3a", "admin-new-91bc", "ingress-2d6e"


@dataclass
class Secured:
    node: Node
    endpoint: Endpoint
    directory: Path
    admin_tokens: Path
    public_key: str


def _endpoint(app: str, directory: Path, *extra: str, port: int | None = None) -> Endpoint:
    endpoint = Endpoint(app, directory, port=port)
    endpoint.process.argv += list(extra)
    endpoint.start()
    return endpoint


def _register_sync(node: Node, uri: str, token: str) -> None:
    request = urllib.request.Request(
        f"{node.admin}/deployments",
        data=json.dumps({"uri": uri}).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status in (200, 201)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    directory = tmp_path_factory.mktemp("secured")
    admin_tokens = directory / "admin-tokens"
    admin_tokens.write_text(f"# rotation: both are valid\n{ADMIN_OLD}\n{ADMIN_NEW}\n")
    ingress_tokens = directory / "ingress-tokens"
    ingress_tokens.write_text(INGRESS + "\n")
    public_key = generate_key_pair(directory / "signing.pem")
    endpoint = _endpoint(APP, directory, "--identity-key", public_key)
    node = Node(
        "local",
        directory / "data",
        extra=[
            "--admin-token-file",
            str(admin_tokens),
            "--ingress-token-file",
            str(ingress_tokens),
            "--request-signing-key-file",
            str(directory / "signing.pem"),
        ],
    )
    try:
        node.start()  # (waits on /restate/health: open without a token)
        _register_sync(node, endpoint.uri, ADMIN_NEW)
    except BaseException:
        print(node.process.output()[-5000:], endpoint.process.output()[-5000:])
        node.kill()
        endpoint.kill()
        raise
    yield Secured(node, endpoint, directory, admin_tokens, public_key)
    print(node.process.output()[-20000:], endpoint.process.output()[-5000:])
    endpoint.stop()
    node.stop()


@pytest.fixture
async def client(secured: Secured) -> AsyncIterator[Client]:
    http = Client(secured.node)
    yield http
    await http.close()


async def _admin(
    client: Client, method: str, path: str, body: object = None, token: str | None = ADMIN_NEW
) -> Response:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return await client.request(method, f"{client.node.admin}{path}", body, headers=headers)


async def _call(
    client: Client,
    path: str,
    body: object = None,
    token: str | None = INGRESS,
    headers: dict[str, str] | None = None,
) -> Response:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    return await client.call(path, body, headers=all_headers)


def _unauthorized(response: Response, source: str | None) -> None:
    assert response.status == 401, response.body
    body = response.json()
    assert body["code"] == 401 and "token" in body["message"]
    assert body.get("source") == source
    assert response.headers["www-authenticate"] == "Bearer"


async def test_tokens_guard_the_admin_api_and_the_ingress(client: Client) -> None:
    for token in (None, "wrong", ADMIN_OLD[:-1], INGRESS):
        _unauthorized(await _admin(client, "GET", "/deployments", token=token), None)
    for token in (ADMIN_OLD, ADMIN_NEW):
        assert (await _admin(client, "GET", "/deployments", token=token)).status == 200
    # Registering, cancelling, reading state: all behind the token.
    _unauthorized(
        await _admin(client, "POST", "/deployments", {"uri": "http://127.0.0.1:1"}, token=None),
        None,
    )
    _unauthorized(
        await _admin(client, "PATCH", f"/invocations/inv_{'1' * 48}/kill", token="x"), None
    )
    # Health stays open on both servers.
    assert (await _admin(client, "GET", "/health", token=None)).status == 200
    assert (await client.call("/restate/health", method="GET")).status == 200

    for token in (None, "wrong", ADMIN_NEW):
        _unauthorized(await _call(client, "/Greeter/greet", "Ada", token=token), "ingress")
    # A raw "Authorization: TOKEN" without the scheme is not a bearer token.
    _unauthorized(
        await client.call("/Greeter/greet", "Ada", headers={"authorization": INGRESS}), "ingress"
    )
    answer = await _call(client, "/Greeter/greet", "Ada")
    assert answer.status == 200 and answer.json() == "Hello, Ada!"


async def test_the_web_console_needs_the_admin_token(client: Client) -> None:
    """README "Web console": the same token, as a bearer or as a browser's Basic password (the
    console asks the browser for it); without it nothing of the console answers."""
    for path in ("/ui", "/ui/invocations", "/ui/static/htmx.min.js"):
        refused = await _admin(client, "GET", path, token=None)
        assert refused.status == 401, refused.body
        assert refused.headers["www-authenticate"].startswith('Basic realm="Cairn console"')
        for token in ("wrong", INGRESS):
            assert (await _admin(client, "GET", path, token=token)).status == 401
        assert (await _admin(client, "GET", path)).status == 200
    for password, status in ((ADMIN_NEW, 200), ("wrong", 401), (INGRESS, 401)):
        basic = base64.b64encode(f"admin:{password}".encode()).decode()
        answer = await client.request(
            "GET", f"{client.node.admin}/ui/state", headers={"authorization": f"Basic {basic}"}
        )
        assert answer.status == status, answer.body
    # Basic is the console's alone: the JSON admin API still wants a bearer token.
    basic = base64.b64encode(f"admin:{ADMIN_NEW}".encode()).decode()
    answer = await client.request(
        "GET", f"{client.node.admin}/deployments", headers={"authorization": f"Basic {basic}"}
    )
    _unauthorized(answer, None)


async def test_a_rotated_token_file_takes_effect_without_a_restart(
    client: Client, secured: Secured
) -> None:
    original = secured.admin_tokens.read_text()
    try:
        secured.admin_tokens.write_text(f"{ADMIN_NEW}\n")  # the old token is retired
        _unauthorized(await _admin(client, "GET", "/services", token=ADMIN_OLD), None)
        assert (await _admin(client, "GET", "/services", token=ADMIN_NEW)).status == 200
        # A file that became unusable (empty) keeps the tokens it had, with a warning.
        secured.admin_tokens.write_text("")
        assert (await _admin(client, "GET", "/services", token=ADMIN_NEW)).status == 200
    finally:
        secured.admin_tokens.write_text(original)
    assert (await _admin(client, "GET", "/services", token=ADMIN_OLD)).status == 200
    # The ingress: a second token added, then the first one retired.
    ingress_tokens = secured.directory / "ingress-tokens"
    try:
        ingress_tokens.write_text(f"{INGRESS}\ningress-next-5a1\n")
        for token in (INGRESS, "ingress-next-5a1"):
            assert (await _call(client, "/Greeter/greet", "Di", token=token)).status == 200
        ingress_tokens.write_text("ingress-next-5a1\n")
        _unauthorized(await _call(client, "/Greeter/greet", "Di"), "ingress")
        assert (await _call(client, "/Greeter/greet", "Di", token="ingress-next-5a1")).status == 200
    finally:
        ingress_tokens.write_text(INGRESS + "\n")
    assert (await _call(client, "/Greeter/greet", "Di")).status == 200


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "CAIRN_ADMIN_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *argv],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_sends_the_admin_token_from_the_environment_or_a_flag(secured: Secured) -> None:
    admin = secured.node.admin
    refused = _cli("services", "list", "--admin", admin)
    assert refused.returncode != 0
    assert "401" in refused.stderr and "CAIRN_ADMIN_TOKEN" in refused.stderr
    assert "Traceback" not in refused.stderr
    wrong = _cli("services", "list", "--admin", admin, env={"CAIRN_ADMIN_TOKEN": "nope"})
    assert wrong.returncode != 0 and "invalid bearer token" in wrong.stderr
    from_env = _cli("services", "list", "--admin", admin, env={"CAIRN_ADMIN_TOKEN": ADMIN_OLD})
    assert from_env.returncode == 0, from_env.stderr
    assert "Greeter" in from_env.stdout
    from_flag = _cli("deployments", "list", "--admin", admin, "--admin-token", ADMIN_NEW)
    assert from_flag.returncode == 0 and secured.endpoint.uri in from_flag.stdout
    registered = _cli(
        "deployments",
        "register",
        secured.endpoint.uri,
        "--admin",
        admin,
        "--admin-token",
        ADMIN_NEW,
    )
    assert registered.returncode == 0, registered.stderr
    assert "Greeter (revision " in registered.stdout


def _log_bytes(secured: Secured) -> bytes:
    """Every byte of the node's log (the stored log records)."""
    root = secured.directory / "data" / "log"
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


async def test_secret_headers_reach_the_handler_but_neither_the_log_nor_admin(
    client: Client, secured: Secured
) -> None:
    # (The handler answers digests of what it saw: its output is in the log.)
    secrets = {"x-api-key": "sk-live-8c1d0a", "cookie": "session=c00k1e-4b7e"}
    sent = await _call(
        client, "/Holder/k1/hold/send", headers={**secrets, "x-plain": "visible-5e2"}
    )
    assert sent.status == 202, sent.body
    invocation_id = sent.json()["invocationId"]
    # While it waits (suspended), admin shows the headers with the secret ones redacted.
    awakeable = await client.wait_for(lambda: _held_awakeable(client), timeout_s=60)
    described = await _admin(client, "GET", f"/invocations/{invocation_id}")
    assert described.json()["status"] == "suspended", described.body
    shown = dict(described.json()["headers"])
    assert shown["x-api-key"] == shown["cookie"] == shown["authorization"] == "<redacted>"
    assert shown["x-plain"] == "visible-5e2"
    for value in (*secrets.values(), INGRESS):
        assert value.encode() not in described.body
    resolved = await _call(client, f"/restate/awakeables/{awakeable}/resolve", "go")
    assert resolved.status == 202, resolved.body
    # The handler, replaying after its suspension, sees every header in clear.
    attached = await _call(client, f"/restate/invocation/{invocation_id}/attach")
    assert attached.status == 200, attached.body
    seen = attached.json()
    assert seen["x-api-key"] == _digest(secrets["x-api-key"])
    assert seen["cookie"] == _digest(secrets["cookie"])
    assert seen["authorization"] == _digest(f"Bearer {INGRESS}")
    assert seen["x-plain"] == _digest("visible-5e2")

    # A secret header a handler passes on a call is sealed in its journal and the callee's too.
    relayed = await _call(client, "/Echo/relay", "0f77")
    assert relayed.status == 200 and relayed.json()["x-api-key"] == _digest("sk-relay-77f0")

    stored = _log_bytes(secured)
    assert b"visible-5e2" in stored and b"x-api-key" in stored  # the records are there...
    for value in (*secrets.values(), "sk-relay-77f0", INGRESS):  # ...without the secrets
        assert value.encode() not in stored, value
    node_output = secured.node.process.output()
    assert all(value not in node_output for value in secrets.values())


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def _held_awakeable(client: Client) -> str | None:
    """The awakeable the held invocation waits on, once it is suspended."""
    response = await _admin(client, "GET", "/services/Holder/state/k1")
    awakeable = response.json()["state"].get("awakeable") if response.status == 200 else None
    if awakeable is None:
        return None
    listed = await _admin(client, "GET", "/invocations?status=suspended")
    return awakeable if listed.json()["invocations"] else None


async def test_the_endpoint_refuses_callers_that_do_not_sign(secured: Secured) -> None:
    """The attacker: a direct gRPC client to the endpoint, unsigned."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.endpoint.port}") as channel:
        stub = endpoint_pb2_grpc.EndpointStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Discover(pb.DiscoverRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_endpoint_expecting_another_key_cannot_be_registered(
    client: Client, secured: Secured
) -> None:
    other = generate_key_pair(secured.directory / "other.pem")
    stranger = _endpoint(APP, secured.directory, "--identity-key", other)
    try:
        refused = await _admin(client, "POST", "/deployments", {"uri": stranger.uri})
        assert refused.status == 400, refused.body
        assert "refused this node's request signature" in refused.json()["message"]
    finally:
        stranger.stop()


async def test_registration_errors_are_in_our_words(client: Client, secured: Secured) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    not_grpc = secured.node.ingress  # an HTTP/1 server
    for uri in (closed, not_grpc):
        refused = await _admin(client, "POST", "/deployments", {"uri": uri})
        assert refused.status == 400, refused.body
        message = refused.json()["message"]
        assert message.startswith(f"cannot reach a Cairn endpoint at {uri}"), message
        for raw in ("Connection refused", "failed to connect", "UNAVAILABLE", "http1", "ipv4:"):
            assert raw not in message
    for uri in ("ftp://127.0.0.1:1", "file:///etc/passwd", "http://127.0.0.1:1/admin?x=1"):
        refused = await _admin(client, "POST", "/deployments", {"uri": uri})
        assert (
            refused.status == 400 and "schemes: http, https, grpc, grpcs" in refused.body.decode()
        )
    bad_force = await _admin(
        client, "POST", "/deployments", {"uri": secured.endpoint.uri, "force": "yes"}
    )
    assert bad_force.status == 400


async def test_reregistration_revisions_and_force(client: Client, secured: Secured) -> None:
    # The same deployment again: idempotent.
    again = await _admin(client, "POST", "/deployments", {"uri": secured.endpoint.uri})
    assert again.status == 200, again.body
    first_id = again.json()["id"]
    before = (await _admin(client, "GET", "/services/Greeter")).json()
    # A new deployment serving Greeter: its next revision, and calls go there.
    v2 = _endpoint("tests.e2e.apps.security:greeter_app", secured.directory)
    port = free_port()
    moving = _endpoint(APP, secured.directory, port=port)
    try:
        created = await _admin(client, "POST", "/deployments", {"uri": v2.uri})
        assert created.status == 201, created.body
        after = (await _admin(client, "GET", "/services/Greeter")).json()
        assert after["revision"] == before["revision"] + 1
        assert after["deployment_id"] == created.json()["id"] != first_id
        assert (await _call(client, "/Greeter/greet", "Bo")).json() == "Hello again, Bo!"

        # The same URI now serving changed services: 409 unless forced.
        assert (await _admin(client, "POST", "/deployments", {"uri": moving.uri})).status == 201
        echo_before = (await _admin(client, "GET", "/services/Echo")).json()
        moving.stop()
        changed = _endpoint("tests.e2e.apps.security:changed_app", secured.directory, port=port)
        try:
            conflict = await _admin(client, "POST", "/deployments", {"uri": moving.uri})
            assert conflict.status == 409, conflict.body
            assert '"force": true' in conflict.json()["message"]
            services = (await _admin(client, "GET", "/services/Echo")).json()
            assert "extra" not in {h["name"] for h in services["handlers"]}
            forced = await _admin(
                client, "POST", "/deployments", {"uri": moving.uri, "force": True}
            )
            assert forced.status == 201, forced.body
            echo = (await _admin(client, "GET", "/services/Echo")).json()
            assert "extra" in {h["name"] for h in echo["handlers"]}
            assert echo["revision"] == echo_before["revision"] + 1
            assert (await _call(client, "/Echo/extra")).json() == "new"
        finally:
            changed.stop()
    finally:
        v2.stop()
        moving.stop()
    # Put the module's endpoint back in front for the other tests (a later registration wins).
    # "force" registers even an unchanged deployment again: its services are its own again.
    restored = await _admin(
        client, "POST", "/deployments", {"uri": secured.endpoint.uri, "force": True}
    )
    assert restored.status == 201, restored.body
    assert (await _call(client, "/Greeter/greet", "Cy")).json() == "Hello, Cy!"
