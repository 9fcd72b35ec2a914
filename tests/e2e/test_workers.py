"""``cairn server --workers 2`` on Kafka: two node processes behind the same ingress and admin
ports that split the partitions, a worker killed -9 leaves its partitions to the other and is
restarted by the parent, and SIGTERM to the parent stops them all within the shutdown timeout."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Node

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
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


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


def _views(node: Node) -> dict[str, list[int]]:
    """Node id -> partitions it leads, from ``GET /cluster`` over new connections (the kernel
    spreads them over the processes sharing the admin port)."""
    views: dict[str, list[int]] = {}
    for _ in range(_CONNECTIONS):
        try:
            with urllib.request.urlopen(f"{node.admin}/cluster", timeout=5) as response:
                body = response.read()
        except OSError:
            continue  # a worker that is stopping or starting
        view = json.loads(body)
        views[view["node"]] = sorted(view["leading"])
    return views


def _split(views: dict[str, list[int]]) -> bool:
    """Every partition led by exactly one of the processes, and each process leads some."""
    led = sorted(p for leading in views.values() for p in leading)
    return led == list(range(PARTITIONS)) and all(views.values())


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.2)


def _wait_views(node: Node, processes: int, what: str) -> dict[str, list[int]]:
    """Wait until ``processes`` processes answer and split the partitions between them."""
    last: dict[str, list[int]] = {}

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
    assert sorted(os.listdir(tmp_path / "data")) == ["worker-1", "worker-2"]

    views = _wait_views(workers, 2, "the two workers split the partitions")
    assert sorted(node_id.split("/")[0] for node_id in views) == ["w-1", "w-2"]

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
