"""``cairn server --workers 2`` on Kafka: two node processes behind the same ingress and admin
ports that split the partitions, a worker killed -9 leaves its partitions to the other and is
restarted by the parent, and SIGTERM to the parent stops them all within the shutdown timeout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import Endpoint, Node

APP = "tests.e2e.apps.core:app"
PARTITIONS = 4
SESSION_TIMEOUT_MS = 3000
SHUTDOWN_TIMEOUT_S = 10
# GET /cluster over this many new connections reaches both workers but with odds of 2**-39.
_CONNECTIONS = 40


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _listening_ports(pid: int) -> set[int]:
    """TCP ports on which a socket owned by process ``pid`` listens."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            columns = line.split()
            local, state, inode = columns[1], columns[3], columns[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def _views(node: Node) -> dict[str, Any]:
    """Node id -> its ``GET /cluster`` (partitions it leads, internal address), over new
    connections (the kernel spreads them over the processes sharing the admin port)."""
    views: dict[str, Any] = {}
    for _ in range(_CONNECTIONS):
        try:
            with urllib.request.urlopen(f"{node.admin}/cluster", timeout=5) as response:
                body = response.read()
        except OSError:
            continue  # a worker that is stopping or starting
        view = json.loads(body)
        views[view["node"]] = view
    return views


def _split(views: dict[str, Any]) -> bool:
    """Every partition led by exactly one of the processes, and each process leads some."""
    led = sorted(p for view in views.values() for p in view["leading"])
    return led == list(range(PARTITIONS)) and all(view["leading"] for view in views.values())


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.2)


def _wait_views(node: Node, processes: int, what: str) -> dict[str, Any]:
    """Wait until ``processes`` processes answer and split the partitions between them."""
    last: dict[str, Any] = {}

    def split() -> bool:
        nonlocal last
        last = _views(node)
        return len(last) == processes and _split(last)

    try:
        _wait(split, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc} (last: {last})") from None
    return last


@pytest.fixture
def workers(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Node]:
    flags = ["--workers", "2", "--node-name", "w", "--shutdown-timeout", str(SHUTDOWN_TIMEOUT_S)]
    flags += ["--cluster-session-timeout-ms", str(SESSION_TIMEOUT_MS)]
    node = Node("kafka", tmp_path / "data", kafka_bootstrap, PARTITIONS, extra=flags)
    node.start()  # one worker answers the health check
    _wait(lambda: "cairn: 2 workers ready" in node.process.output(), "both workers ready")
    yield node
    print(node.process.output()[-30000:])  # shown when the test failed
    node.stop()


def test_two_workers_share_the_ports_split_the_partitions_and_survive_kill_9(
    workers: Node, tmp_path: Path
) -> None:
    parent = workers.process.process
    assert parent is not None
    pids = _children(parent.pid)
    assert len(pids) == 2, pids
    for pid in pids:  # both processes listen on the same two ports
        assert {workers.ingress_port, workers.admin_port} <= _listening_ports(pid)
    assert sorted(os.listdir(tmp_path / "data")) == ["cluster-secret", "worker-1", "worker-2"]

    views = _wait_views(workers, 2, "the two workers split the partitions")
    assert sorted(node_id.split("/")[0] for node_id in views) == ["w-1", "w-2"]
    # Each its own node-to-node port (results go there: the shared ports cannot tell them apart).
    addresses = {view["internal_address"] for view in views.values()}
    assert len(addresses) == 2 and all(a.startswith("http://127.0.0.1:") for a in addresses)

    # The parent is held (SIGSTOP) so the test sees the partitions move before the restart.
    victim = pids[0]
    parent.send_signal(signal.SIGSTOP)
    try:
        os.kill(victim, signal.SIGKILL)
        alone = _wait_views(workers, 1, "the surviving worker leads every partition")
        (survivor,) = alone
        assert survivor in views  # the worker that was not killed, same incarnation
    finally:
        parent.send_signal(signal.SIGCONT)

    # The parent restarts the killed worker (a new process, same name and data dir): it rejoins.
    rejoined = _wait_views(workers, 2, "the restarted worker leads partitions again")
    assert survivor in rejoined and len(set(rejoined) - set(views)) == 1
    assert "restarting it in" in workers.process.output()
    new_pids = _children(parent.pid)
    assert len(new_pids) == 2 and victim not in new_pids

    # SIGTERM to the parent: every worker stops gracefully, within the shutdown timeout.
    started = time.monotonic()
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(SHUTDOWN_TIMEOUT_S + 10) == 0, workers.process.output()[-5000:]
    assert time.monotonic() - started < SHUTDOWN_TIMEOUT_S
    assert _children(parent.pid) == []
    for pid in new_pids:
        assert not Path(f"/proc/{pid}").exists()


KEYS = 20
ADDS_PER_KEY = 10


def _services(node: Node) -> dict[str, frozenset[str]]:
    """Node id -> the service names it knows, over new connections to the admin port."""
    seen: dict[str, frozenset[str]] = {}
    for _ in range(_CONNECTIONS):
        try:
            with urllib.request.urlopen(f"{node.admin}/cluster", timeout=5) as response:
                node_id = json.loads(response.read())["node"]
            with urllib.request.urlopen(f"{node.admin}/services", timeout=5) as response:
                names = frozenset(s["name"] for s in json.loads(response.read())["services"])
        except OSError:
            continue
        seen[node_id] = names
    return seen


async def _add(http: aiohttp.ClientSession, node: Node, key: str, n: int) -> None:
    """One idempotent add; retried (same idempotency key: it runs once) while a worker dies."""
    deadline = time.monotonic() + 120
    while True:
        try:
            async with http.post(
                f"{node.ingress}/Counter/{key}/add",
                json=1,
                headers={"idempotency-key": f"{key}-{n}"},
            ) as response:
                if response.status == 200:
                    return
                detail = f"{response.status} {await response.text()}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = repr(exc)
        assert time.monotonic() < deadline, f"add {key}-{n}: {detail}"
        await asyncio.sleep(0.2)


@pytest.fixture
def endpoint(workers: Node, tmp_path: Path) -> Iterator[Endpoint]:
    """The core app, registered through the shared admin port, known to both workers."""
    started = Endpoint(APP, tmp_path)
    started.start()
    request = urllib.request.Request(
        f"{workers.admin}/deployments",
        data=json.dumps({"uri": started.uri}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status in (200, 201)
    _wait(
        lambda: (
            len(known := _services(workers)) == 2
            and all("Counter" in names for names in known.values())
        ),
        "both workers know the deployment",
    )
    _wait_views(workers, 2, "the two workers split the partitions")
    yield started
    print(started.process.output()[-5000:])  # shown when the test failed
    started.stop()


async def test_counter_adds_through_the_shared_port_are_exact_across_kill_9(
    workers: Node, endpoint: Endpoint
) -> None:
    parent = workers.process.process
    assert parent is not None
    victim = _children(parent.pid)[0]
    keys = [f"k{i}" for i in range(KEYS)]
    # A new connection per request: the kernel spreads them over both workers, so many requests
    # are taken by the worker that does not lead their partition.
    connector = aiohttp.TCPConnector(force_close=True, limit=20)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        adds = [(key, n) for n in range(ADDS_PER_KEY) for key in keys]
        done = 0
        half_done = asyncio.Event()

        async def add(key: str, n: int) -> None:
            nonlocal done
            await _add(http, workers, key, n)
            done += 1
            if done == len(adds) // 2:
                half_done.set()

        load: asyncio.Future[Any] = asyncio.gather(*(add(key, n) for key, n in adds))
        halfway: asyncio.Future[Any] = asyncio.ensure_future(half_done.wait())
        await asyncio.wait([halfway, load], return_when=asyncio.FIRST_COMPLETED)
        halfway.cancel()
        assert not load.done(), load.result()  # a failed add ends the test here
        # kill -9 mid-load: the parent restarts it; its partitions move meanwhile
        os.kill(victim, signal.SIGKILL)
        await load
        for key in keys:
            url = f"{workers.ingress}/Counter/{key}/get"
            async with http.post(url, skip_auto_headers=["Content-Type"]) as response:
                assert response.status == 200, await response.text()
                assert await response.json() == ADDS_PER_KEY, key

    # kill -9 of the parent: the workers get SIGTERM from the kernel (parent-death signal).
    orphans = _children(parent.pid)
    assert len(orphans) == 2
    workers.kill()
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S + 10
    while any(_alive(pid) for pid in orphans):
        assert time.monotonic() < deadline, "the workers outlived their parent"
        await asyncio.sleep(0.1)
