"""The embedded log's fsync process (``runtime.log.syncers.FsyncProcess``), against real files
and a real child process: requests succeed, split above the per-message descriptor limit, report
a failed fsync, and a child that dies (or whose log's process dies) is noticed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runtime.log import LocalLog, LogError
from runtime.log.fsync_helper import FDS_PER_REQUEST
from runtime.log.syncers import FsyncProcess

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[3]


def _alive(pid: int) -> bool:
    """Running (a zombie, reaped or not, has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _open_files(tmp_path: Path, count: int) -> list[int]:
    fds = []
    for i in range(count):
        fd = os.open(tmp_path / f"f{i}", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"x" * 10)
        fds.append(fd)
    return fds


async def test_a_request_is_answered_once_its_files_are_synced_even_above_the_fd_limit(
    tmp_path: Path,
) -> None:
    syncer = FsyncProcess("test")
    fds = _open_files(tmp_path, FDS_PER_REQUEST + 50)  # two datagrams
    try:
        await asyncio.wait_for(syncer.sync(fds[:3]), 20)
        await asyncio.wait_for(syncer.sync(fds), 20)
        pid = syncer.pid
        assert pid is not None and _alive(pid)
        # The child closed its duplicates: only this process holds the files open.
        held = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert not [name for name in held if name.startswith(str(tmp_path))]
    finally:
        for fd in fds:
            os.close(fd)
        await syncer.close()
    assert not _alive(pid)


async def test_a_failed_fsync_fails_its_request_with_the_error_and_the_next_one_still_works(
    tmp_path: Path,
) -> None:
    syncer = FsyncProcess("test")
    files = _open_files(tmp_path, 2)
    read_end, write_end = os.pipe()  # fdatasync on a pipe fails with EINVAL
    try:
        with pytest.raises(OSError, match=r"fsync failed: \[Errno 22\]"):
            await asyncio.wait_for(syncer.sync([files[0], write_end, files[1]]), 20)
        await asyncio.wait_for(syncer.sync(files), 20)
    finally:
        for fd in (*files, read_end, write_end):
            os.close(fd)
        await syncer.close()


async def test_two_logs_share_one_fsync_process_that_ends_with_the_last_close(
    tmp_path: Path,
) -> None:
    """A node's metadata log syncs through its partitions log's process: one child for both,
    still serving the one left open after the other closed."""
    partitions = LocalLog(tmp_path / "partitions", 2)
    metadata = LocalLog(tmp_path / "metadata", 1, share_fsync_with=partitions)
    await partitions.start()
    await metadata.start()
    try:
        await partitions.append(0, [b"p"])
        await metadata.append(0, [b"m"])
        pid = partitions.fsync_pid
        assert pid is not None and metadata.fsync_pid == pid
        await partitions.close()
        assert _alive(pid)
        assert await metadata.append(0, [b"after"]) == 1
    finally:
        await partitions.close()
        await metadata.close()
    assert not _alive(pid)


async def test_stop_signals_sent_to_the_process_group_do_not_end_the_fsync_process(
    tmp_path: Path,
) -> None:
    """Ctrl-C in a terminal (or systemd's SIGTERM to the group) reaches the child as well as the
    node: the child outlives it, so the node still writes what is queued as it stops."""
    syncer = FsyncProcess("test")
    files = _open_files(tmp_path, 1)
    try:
        await asyncio.wait_for(syncer.sync(files), 20)
        pid = syncer.pid
        assert pid is not None
        for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(pid, stop)
        await asyncio.sleep(0.2)
        await asyncio.wait_for(syncer.sync(files), 20)
        assert _alive(pid)
    finally:
        os.close(files[0])
        await syncer.close()
    assert not _alive(pid)


async def test_a_killed_fsync_process_fails_the_round_and_the_log_refuses_appends(
    tmp_path: Path,
) -> None:
    log = LocalLog(tmp_path, 2)
    await log.start()
    try:
        assert await log.append(0, [b"kept"]) == 0
        pid = log.fsync_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(LogError, match="the fsync process ended"):
            await asyncio.wait_for(log.append(1, [b"lost"]), 20)
        with pytest.raises(LogError, match="restart the log"):
            await log.append(0, [b"refused"])
    finally:
        await log.close()
    reopened = LocalLog(tmp_path, 2)
    await reopened.start()
    try:
        assert await reopened.tail(0) == 1
        await reopened.append(1, [b"after a restart"])  # a new process syncs again
    finally:
        await reopened.close()


def test_the_fsync_process_ends_when_the_process_of_its_log_is_killed(
    tmp_path: Path,
) -> None:
    """kill -9 of a node leaves no fsync process behind: the child reads the end of its socket."""
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        from runtime.log import LocalLog
        async def main():
            log = LocalLog({str(tmp_path)!r}, 1)
            await log.start()
            await log.append(0, [b"x"])
            print(log.fsync_pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    pid = int(result.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
