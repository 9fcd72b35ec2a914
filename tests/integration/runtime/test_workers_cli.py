"""``cairn server --workers N`` refuses what N workers cannot run with one clear line, and the
parent gives up (exit code 1, one clear line) when a worker keeps failing to start."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.integration.runtime.test_cli_errors import ROOT, _binds, _fails_clearly, _server


def test_workers_on_the_local_log_are_refused(tmp_path: Path) -> None:
    expected = (
        "cairn: --workers 2 needs --log kafka: the local log is one process's files "
        "(use --workers 1, or --log kafka)"
    )
    _fails_clearly(_server(tmp_path, *_binds(), "--workers", "2", "--log", "local"), expected)
    # the same through the environment: CAIRN_WORKERS
    done = subprocess.run(
        _server(tmp_path, *_binds()),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CAIRN_WORKERS": "2"},
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [expected]  # one line, nothing else
    assert not (tmp_path / "worker-1").exists()
    _fails_clearly(_server(tmp_path, *_binds(), "--workers", "0"), "--workers must be at least 1")


def test_workers_need_fixed_free_ports(tmp_path: Path) -> None:
    kafka = ["--workers", "2", "--log", "kafka", "--kafka-bootstrap", "127.0.0.1:1"]
    ephemeral = ["--ingress-bind", "127.0.0.1:0", *_binds()[2:]]
    _fails_clearly(_server(tmp_path, *ephemeral, *kafka), "--workers shares one port")
    # A socket that allows port sharing (as another set of workers does) still makes the port
    # taken: the workers must not join it.
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        binds = ["--ingress-bind", f"127.0.0.1:{taken.getsockname()[1]}", *_binds()[2:]]
        _fails_clearly(_server(tmp_path, *binds, *kafka), "Address already in use")


def test_workers_that_keep_failing_to_start_end_the_parent(tmp_path: Path) -> None:
    kafka = ["--workers", "2", "--log", "kafka", "--kafka-bootstrap", "127.0.0.1:1"]
    done = subprocess.run(
        _server(tmp_path, *_binds(), *kafka), cwd=ROOT, capture_output=True, text=True, timeout=170
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("cairn: worker ") and "failed to start 3 times in a row" in last, last
    assert "Unable to bootstrap" in done.stderr  # the workers' own reason is in the output
    assert "restarting it in" in done.stderr  # restarted (with backoff) before giving up
