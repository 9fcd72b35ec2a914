"""Reliability part 5 end to end: every resource a client or an endpoint can hold is bounded.

Each test starts its own node with the limits it exercises set low. Tests about the HTTP layer
alone (overload, read timeouts, keep-alive) run on the local log only: the log plays no part in
them, and a Kafka run would only repeat them at twice the cost.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiohttp

from tests.e2e.apps.effects import open_gate
from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.e2e.harness import ROOT, Client

APP = "tests.e2e.apps.bounds:app"


@asynccontextmanager
async def bounded(
    log_kind: str, bootstrap: str | None, tmp_path: Path, *flags: str
) -> AsyncIterator[tuple[Cluster, Client]]:
    started = await asyncio.to_thread(
        start_cluster, APP, log_kind, tmp_path, bootstrap, extra=list(flags)
    )
    client = Client(started.node)
    try:
        yield started, client
    finally:
        await client.close()
        stop_cluster(started)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _node_pid(cluster: Cluster) -> int:
    assert cluster.node.process.process is not None
    return cluster.node.process.process.pid


async def _metric(client: Client, name: str) -> float:
    response = await client.admin("GET", "/metrics")
    for line in response.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def _assert_refusal(status: int, body: bytes, headers: Mapping[str, str]) -> None:
    assert status in (429, 503), (status, body)
    assert int(headers["Retry-After"]) >= 1
    payload = json.loads(body)
    assert payload["code"] == status and payload["message"]
    # rendered as every other refusal of the ingress (error_response)
    assert payload["source"] == "ingress", payload
    assert headers["x-restate-error-source"] == "ingress"


# ---------------------------------------------------------------- overload


async def test_overload_is_answered_429_at_once_and_nothing_is_lost(tmp_path: Path) -> None:
    """A closed-loop client at 8× the request limit: every answer is the right result or a
    429/503 with Retry-After; retried until answered, every request gets its result exactly."""
    limit, clients, per_client = 8, 64, 8
    async with bounded("local", None, tmp_path, "--max-concurrent-requests", str(limit)) as (
        cluster,
        client,
    ):
        rss_before = _rss_mib(_node_pid(cluster))
        refused = 0
        results: dict[str, int] = {}
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def one(n: int) -> None:
                nonlocal refused
                key = f"req-{n}-{uuid.uuid4().hex[:6]}"
                for _ in range(2_000):
                    async with http.post(
                        f"{cluster.node.ingress}/Work/double",
                        json=n,
                        headers={"idempotency-key": key},
                    ) as response:
                        body = await response.read()
                        if response.status == 200:
                            results[key] = json.loads(body)
                            assert results[key] == 2 * n, (n, body)
                            return
                        _assert_refusal(response.status, body, dict(response.headers))
                        refused += 1
                    await asyncio.sleep(0.01)
                raise AssertionError(f"request {n} was never answered")

            async def loop(worker: int) -> None:
                for i in range(per_client):
                    await one(worker * per_client + i)

            await asyncio.gather(*(loop(w) for w in range(clients)))
        rss_after = _rss_mib(_node_pid(cluster))
        assert len(results) == clients * per_client
        assert refused > 0, "the limit never refused anything"
        # Bounded: refused requests hold nothing. Generous: Python's allocator keeps some.
        assert rss_after < rss_before + 150, (rss_before, rss_after)
        # Each idempotency key became exactly one invocation, each completed once.
        completed = await _all_invocations(client, status="completed")
        assert len(completed) == clients * per_client


async def _all_invocations(client: Client, status: str | None = None) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    cursor = None
    while True:
        query = "limit=1000" + (f"&status={status}" if status else "")
        if cursor:
            query += f"&cursor={cursor}"
        response = await client.admin("GET", f"/invocations?{query}")
        assert response.status == 200, response.body
        page = response.json()
        rows += page["invocations"]
        if (cursor := page["next"]) is None:
            return rows


async def test_running_invocations_wait_for_a_slot_and_a_backlog_is_refused_503(
    tmp_path: Path,
) -> None:
    async with bounded(
        "local",
        None,
        tmp_path,
        "--max-running-invocations",
        "1",
        "--max-waiting-invocations",
        "2",
    ) as (cluster, client):
        gates = [str(tmp_path / f"g{n}") for n in range(4)]
        ids = [await client.send("/Work/gated", gate) for gate in gates[:1]]
        await client.wait_for(lambda: _metric_is(client, "cairn_invoker_open_attempts", 1))
        ids += [await client.send("/Work/gated", gate) for gate in gates[1:]]
        # One runs, three wait (over the bound of two): new requests are refused, nothing appended.
        await client.wait_for(lambda: _metric_is(client, "cairn_invoker_waiting_starts", 3))
        response = await client.call("/Work/double", 1)
        _assert_refusal(response.status, response.body, response.headers)
        assert response.status == 503
        assert len(await _all_invocations(client)) == 4
        for gate in gates:
            open_gate(gate)
        for invocation_id in ids:
            result = await client.attach(invocation_id)
            assert result.status == 200 and result.json() == "open", result.body
        # Started in order, one at a time: never two at once.
        assert await _metric(client, "cairn_invoker_open_attempts") == 0
        response = await client.call("/Work/double", 4)
        assert response.status == 200 and response.json() == 8


async def _metric_is(client: Client, name: str, value: float) -> bool:
    return await _metric(client, name) == value


async def test_a_call_to_the_same_node_with_every_slot_taken_does_not_deadlock(
    log_kind: str, bootstrap: str | None, tmp_path: Path
) -> None:
    """With one running slot, ``caller`` holds it while it waits for ``double``: the invoker asks
    the quiet caller to suspend, which frees the slot, long before the SDK's own 60 s timeout."""
    async with bounded(log_kind, bootstrap, tmp_path, "--max-running-invocations", "1") as (
        _,
        client,
    ):
        started = time.monotonic()
        responses = await asyncio.gather(*(client.call("/Work/caller", n) for n in range(3)))
        assert [r.json() for r in responses] == [1, 3, 5], [r.body for r in responses]
        assert time.monotonic() - started < 45  # the SDK would suspend on its own after 60 s


# ---------------------------------------------------------------- a hung endpoint


async def test_a_hung_attempt_is_aborted_and_the_next_attempt_completes_it(
    log_kind: str, bootstrap: str | None, tmp_path: Path
) -> None:
    """``Hang/once`` hangs forever outside any context action on its first attempt, holding the
    object's lock. After its inactivity + abort timeouts (1 s + 1 s, from the manifest; the
    node's are a minute) the attempt is aborted, the retry completes it, and the invocation
    queued behind it on the same key runs."""
    async with bounded(log_kind, bootstrap, tmp_path) as (_, client):
        marker = tmp_path / "hung"
        hung = await client.send("/Hang/k/once", str(marker))
        await client.wait_for(lambda: asyncio.sleep(0, marker.exists()))
        queued = asyncio.create_task(client.call("/Hang/k/after"))
        result = await client.attach(hung)
        assert result.status == 200 and result.json() == "finished", result.body
        status = await client.invocation(hung)
        assert status["attempt"] >= 2
        after = await asyncio.wait_for(queued, 60)
        assert after.status == 200 and after.json() == "after", after.body
        assert await _metric(client, "cairn_invoker_attempts_aborted_total") >= 1


async def test_a_stopped_endpoint_process_is_noticed_by_keepalive(tmp_path: Path) -> None:
    """SIGSTOP the endpoint mid-attempt: its kernel keeps the connection open, but it answers no
    ping, so the runtime's keepalive fails the stream within seconds (the inactivity timeout is a
    minute); once the process continues, a retry completes the invocation."""
    async with bounded(
        "local",
        None,
        tmp_path,
        "--grpc-keepalive-time-ms",
        "6000",
        "--grpc-keepalive-timeout-ms",
        "2000",
    ) as (cluster, client):
        gate = str(tmp_path / "g")
        invocation_id = await client.send("/Work/gated", gate)

        async def running_on_the_endpoint() -> bool:
            journal = (await client.invocation(invocation_id))["journal"]
            return len(journal) > 1 and bool(journal[1]["completed"])

        # (Stopped before its stream is up, the endpoint would stall the connection handshake,
        # which the connect timeout bounds, not keepalive.)
        await client.wait_for(running_on_the_endpoint)
        endpoint = cluster.endpoint.process.process
        assert endpoint is not None
        endpoint.send_signal(signal.SIGSTOP)
        try:

            async def failed_by_keepalive() -> bool:
                failure = (await client.invocation(invocation_id))["last_failure"]
                return failure is not None and "UNAVAILABLE" in json.dumps(failure)

            await client.wait_for(failed_by_keepalive, timeout_s=45, interval_s=0.5)
        finally:
            endpoint.send_signal(signal.SIGCONT)
        open_gate(gate)
        result = await client.attach(invocation_id)
        assert result.status == 200 and result.json() == "open", result.body


# ---------------------------------------------------------------- attached requests


async def test_requests_attached_to_one_invocation_are_bounded(
    log_kind: str, bootstrap: str | None, tmp_path: Path
) -> None:
    async with bounded(log_kind, bootstrap, tmp_path, "--max-attached-requests", "2") as (
        _,
        client,
    ):
        gate = str(tmp_path / "g")
        invocation_id = await client.send("/Work/gated", gate)
        waiting = [asyncio.create_task(client.attach(invocation_id)) for _ in range(2)]

        async def both_attached() -> bool:
            return bool((await client.invocation(invocation_id))["attached_requests"] == 2)

        await client.wait_for(both_attached)
        response = await client.attach(invocation_id)
        _assert_refusal(response.status, response.body, response.headers)
        assert response.status == 429
        assert (await client.invocation(invocation_id))["attached_requests"] == 2
        open_gate(gate)
        for task in waiting:
            response = await task
            assert response.status == 200 and response.json() == "open", response.body
        response = await client.attach(invocation_id)  # completed: answered at once
        assert response.status == 200 and response.json() == "open"


# ---------------------------------------------------------------- HTTP timeouts


@contextmanager
def _raw(port: int) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        yield sock
    finally:
        sock.close()


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Read until the server closes the connection; (closed in time, what it sent)."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


def _slowloris(port: int) -> bool:
    """Headers one byte every 100 ms, never finished: True when the server closes first."""
    with _raw(port) as sock:
        request = b"POST /Work/double HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 500
        deadline = time.monotonic() + 20
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
                if time.monotonic() > deadline:
                    break
        except (BrokenPipeError, ConnectionResetError):
            return True
        return _closed_within(sock, 1)[0]


def _slow_body(port: int, path: str) -> tuple[bool, bytes]:
    """Complete headers, then 2 of the 10 announced body bytes."""
    with _raw(port) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 10\r\n\r\n12".encode()
        )
        return _closed_within(sock, 15)


def _idle(port: int, path: str) -> bool:
    """One request on a keep-alive connection, then nothing: True when the server closes it."""
    with _raw(port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.settimeout(10)
        first = sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 200"), first
        return _closed_within(sock, 15)[0]


async def test_slow_headers_and_slow_bodies_are_cut_off(tmp_path: Path) -> None:
    """The idle timeout is a minute here: what cuts the slowloris off is the header timeout."""
    async with bounded(
        "local",
        None,
        tmp_path,
        "--http-header-timeout-ms",
        "1500",
        "--http-idle-timeout-ms",
        "60000",
        "--http-body-timeout-ms",
        "1500",
    ) as (cluster, _):
        node = cluster.node
        for port in (node.ingress_port, node.admin_port):
            closed = await asyncio.to_thread(_slowloris, port)
            assert closed, "a client sending headers byte by byte kept its connection"
        for port, path in ((node.ingress_port, "/Work/double"), (node.admin_port, "/deployments")):
            closed, answer = await asyncio.to_thread(_slow_body, port, path)
            assert closed, f"a slow body on {path} kept its connection"
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b'"code": 408' in answer or b'"code":408' in answer, answer
            # the ingress's error body names its source; the admin API's has none
            assert (b'"source": "ingress"' in answer) == (port == node.ingress_port), answer
        # A connection that sends its headers in time is served (and kept alive).
        assert not await asyncio.to_thread(lambda: _closed_within_after_request(node.ingress_port))
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{node.ingress}/Work/double", json=5) as response:
                assert response.status == 200 and await response.json() == 10


def _closed_within_after_request(port: int) -> bool:
    """A request, then 3 s of silence (past the header timeout, within the idle timeout)."""
    with _raw(port) as sock:
        sock.sendall(b"GET /restate/health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        return _closed_within(sock, 3)[0]


async def test_idle_keep_alive_connections_are_closed(tmp_path: Path) -> None:
    async with bounded("local", None, tmp_path, "--http-idle-timeout-ms", "1500") as (cluster, _):
        node = cluster.node
        for port, path in ((node.ingress_port, "/restate/health"), (node.admin_port, "/health")):
            closed = await asyncio.to_thread(_idle, port, path)
            assert closed, "an idle keep-alive connection was kept past the idle timeout"


def test_the_http_idle_timeout_defaults_to_75_s_and_limits_are_flags_and_env() -> None:
    from runtime.config import NodeConfig, config_default

    assert config_default("http_idle_timeout_ms") == 75_000
    script = (
        "import sys; from runtime.cli import _parser, _config;"
        "c = _config(_parser().parse_args(sys.argv[1:]));"
        "print(c.http_idle_timeout_ms, c.max_concurrent_requests, c.abort_timeout_ms)"
    )
    output = subprocess.run(
        [sys.executable, "-c", script, "server", "--max-concurrent-requests", "7"],
        cwd=ROOT,
        env={"CAIRN_HTTP_IDLE_TIMEOUT_MS": "5000", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert output == ["5000", "7", str(NodeConfig(data_dir=Path(".")).abort_timeout_ms)]


# ---------------------------------------------------------------- paged listing


async def test_invocations_are_listed_in_pages(
    log_kind: str, bootstrap: str | None, tmp_path: Path
) -> None:
    async with bounded(log_kind, bootstrap, tmp_path) as (cluster, client):
        sent = {await client.send("/Work/double", n) for n in range(25)}
        for invocation_id in sent:
            assert (await client.attach(invocation_id)).status == 200
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            query = "?limit=10" + (f"&cursor={cursor}" if cursor else "")
            page = (await client.admin("GET", f"/invocations{query}")).json()
            assert len(page["invocations"]) <= 10
            seen += [row["id"] for row in page["invocations"]]
            pages += 1
            if (cursor := page["next"]) is None:
                break
        assert len(seen) == len(set(seen)) == 25 and set(seen) == sent
        assert pages >= 3
        default = (await client.admin("GET", "/invocations?status=completed")).json()
        assert len(default["invocations"]) == 25 and default["next"] is None
        none = (await client.admin("GET", "/invocations?status=suspended&limit=5")).json()
        assert none == {"invocations": [], "next": None}
        for bad in ("limit=0", "limit=1001", "limit=x", "cursor=nope", "cursor=99:inv_x"):
            response = await client.admin("GET", f"/invocations?{bad}")
            assert response.status == 400, (bad, response.body)
            assert response.json()["code"] == 400
        cli = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "runtime.cli",
                "invocations",
                "list",
                "--limit",
                "12",
                "--json",
                "--admin",
                cluster.node.admin,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        assert len(json.loads(cli.stdout)) == 12
        everything = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "runtime.cli", "invocations", "list", "--json"]
            + ["--admin", cluster.node.admin],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        assert {row["id"] for row in json.loads(everything.stdout)} == sent
