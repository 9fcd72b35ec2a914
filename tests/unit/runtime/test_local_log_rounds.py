"""LocalLog's rounds with appends queued behind the one in flight (DESIGN §3, issue 10): a failed
write fails every append behind it and nothing more reaches a file; close() writes what is
queued and closes no file under the writing thread, even when close() itself is cancelled.

Each test holds a round in the ``sync_file`` seam (a real fdatasync once released)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from runtime.log import LocalLog, LogError, segments

pytestmark = pytest.mark.timeout(60)


class _HeldFirstSync:
    """A sync seam that holds the first fsync until ``release`` (then fails it, if asked) and
    counts every call."""

    def __init__(self, fail_first: bool = False) -> None:
        self.first_started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self._fail_first = fail_first

    def __call__(self, fd: int) -> None:
        self.calls += 1
        call = self.calls
        if call == 1:
            self.first_started.set()
            self.release.wait(30)
            if self._fail_first:
                raise OSError(5, "Input/output error")
        segments.sync(fd)


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cairn-log-syncer"]


def _open_fds_under(path: Path) -> list[str]:
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
        if target.startswith(str(path)):
            names.append(target)
    return names


async def _read(log: LocalLog, partition: int, count: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    reader = log.read(partition, 0)
    async with asyncio.timeout(20):
        async for batch in reader:
            out.extend((r.lsn, r.payload) for r in batch)
            if len(out) >= count:
                break
    await reader.aclose()  # type: ignore[attr-defined]
    return out


async def test_a_failed_fsync_fails_the_rounds_queued_behind_it_and_nothing_more_is_written(
    tmp_path: Path,
) -> None:
    """The appends queued (on both partitions) while a round's fsync fails are refused, never
    written, and the log refuses appends until a restart."""
    sync = _HeldFirstSync(fail_first=True)
    log = LocalLog(tmp_path, 2, sync_file=sync)
    await log.start()
    try:
        first = asyncio.create_task(log.append(0, [b"a"]))
        assert await asyncio.to_thread(sync.first_started.wait, 20)
        behind = [
            asyncio.create_task(log.append(0, [b"b"])),
            asyncio.create_task(log.append(1, [b"c"])),
        ]
        await asyncio.sleep(0.05)
        sync.release.set()
        results = await asyncio.gather(first, *behind, return_exceptions=True)
        assert all(isinstance(r, LogError) for r in results), results
        with pytest.raises(LogError, match="restart the log"):
            await log.append(1, [b"d"])
        assert sync.calls == 1  # no round after the failed one reached a file
        assert await log.tail(0) == 0 and await log.tail(1) == 0
    finally:
        sync.release.set()
        await log.close()
    reopened = LocalLog(tmp_path, 2)
    await reopened.start()
    try:
        # The failed round's frame may have reached the file (as a cancelled append's may);
        # what was queued behind it did not.
        assert await reopened.tail(0) <= 1 and await reopened.tail(1) == 0
    finally:
        await reopened.close()


async def test_close_during_a_round_writes_the_appends_queued_behind_it_then_ends_the_thread(
    tmp_path: Path,
) -> None:
    sync = _HeldFirstSync()
    before = len(_writer_threads())
    log = LocalLog(tmp_path, 2, sync_file=sync)
    await log.start()
    first = asyncio.create_task(log.append(0, [b"a"]))
    assert await asyncio.to_thread(sync.first_started.wait, 20)
    behind = [asyncio.create_task(log.append(p, [b"b%d" % p])) for p in (0, 1)]
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(log.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # waits for the held round and the ones behind it
    with pytest.raises(LogError, match="closed"):
        await log.append(1, [b"late"])
    sync.release.set()
    await asyncio.wait_for(closing, 20)
    assert [await first, *[await t for t in behind]] == [0, 1, 0]
    assert len(_writer_threads()) == before
    assert _open_fds_under(tmp_path) == []
    reopened = LocalLog(tmp_path, 2)
    await reopened.start()
    try:
        assert await _read(reopened, 0, 2) == [(0, b"a"), (1, b"b0")]
        assert await _read(reopened, 1, 1) == [(0, b"b1")]
    finally:
        await reopened.close()


async def test_a_cancelled_close_still_lets_the_thread_finish_before_the_files_close(
    tmp_path: Path,
) -> None:
    """close() cancelled while a round is in flight still waits for it before it closes any
    file: the thread never writes a closed descriptor, nothing is left open, and what it made
    durable is acknowledged."""
    sync = _HeldFirstSync()
    before = len(_writer_threads())
    log = LocalLog(tmp_path, 1, segment_bytes=40, sync_file=sync)
    await log.start()
    first = asyncio.create_task(log.append(0, [b"a"]))
    assert await asyncio.to_thread(sync.first_started.wait, 20)
    second = asyncio.create_task(log.append(0, [b"b" * 30, b"c" * 30]))  # rolls segments
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(log.close())
    await asyncio.sleep(0.05)
    releaser = threading.Timer(0.3, sync.release.set)  # while close() blocks the loop
    releaser.start()
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    releaser.join()
    assert len(_writer_threads()) == before
    assert await asyncio.wait_for(first, 20) == 0
    assert await asyncio.wait_for(second, 20) == 2
    assert _open_fds_under(tmp_path) == []
    reopened = LocalLog(tmp_path, 1, segment_bytes=40)
    await reopened.start()
    try:
        assert await _read(reopened, 0, 3) == [(0, b"a"), (1, b"b" * 30), (2, b"c" * 30)]
    finally:
        await reopened.close()
