"""LocalLog's rounds (issue 10): the writing thread takes the appends queued during a round as
its next round by itself, and its hand-back callback publishes on the loop. The invariants of
DESIGN §3 around that: ``append`` returns only after its fsync, readers see durable records in
LSN order, a failed write fails every append behind it, and close() writes what is queued and
closes no file under the thread.

Each test holds a round in the ``sync_file`` seam (a real fdatasync once released)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from runtime.log import LocalLog, LogError, segments

pytestmark = pytest.mark.timeout(60)


class _HeldFirstSync:
    """A sync seam that holds the first fsync until ``release`` and counts every call."""

    def __init__(self, fail_first: bool = False) -> None:
        self.first_started = threading.Event()
        self.release = threading.Event()
        self.second_done = threading.Event()
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
        if call == 2:
            self.second_done.set()


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cairn-log-writer"]


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


@pytest.mark.parametrize("segment_bytes", [64 << 20, 40], ids=["one-segment", "rolling"])
async def test_the_round_queued_behind_another_is_written_while_the_loop_is_busy(
    tmp_path: Path, segment_bytes: int
) -> None:
    """Appends queued during a round are written and fsynced as soon as that round is, even
    while the loop cannot run (before: the next round started only from the loop, after the
    previous one was handed back); they are acknowledged, and read, in LSN order."""
    sync = _HeldFirstSync()
    log = LocalLog(tmp_path, 1, segment_bytes=segment_bytes, sync_file=sync)
    await log.start()
    try:
        first = asyncio.create_task(log.append(0, [b"a"]))
        assert await asyncio.to_thread(sync.first_started.wait, 20)
        second = asyncio.create_task(log.append(0, [b"b", b"c"]))
        await asyncio.sleep(0.05)  # queued behind the held round
        assert not first.done() and not second.done()
        sync.release.set()
        # Blocks the loop: only the writing thread can start the second round now.
        assert sync.second_done.wait(20), "the queued round waited for the loop"
        assert await first == 0 and await second == 2
        assert await log.tail(0) == 3
        assert await _read(log, 0, 3) == [(0, b"a"), (1, b"b"), (2, b"c")]
    finally:
        sync.release.set()
        await log.close()
    reopened = LocalLog(tmp_path, 1, segment_bytes=segment_bytes)
    await reopened.start()
    try:
        assert await _read(reopened, 0, 3) == [(0, b"a"), (1, b"b"), (2, b"c")]
        assert await reopened.append(0, [b"d"]) == 3
    finally:
        await reopened.close()


async def test_a_failed_fsync_fails_the_rounds_queued_behind_it_and_nothing_more_is_written(
    tmp_path: Path,
) -> None:
    """The appends queued (on both partitions) while a round's fsync fails are refused, never
    written: the thread writes nothing after a failure, and the log refuses appends until a
    restart."""
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
        assert all(isinstance(r, LogError) and isinstance(r.__cause__, OSError) for r in results)
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
    """close() cancelled while the thread still has appends waits for it (blocking) before it
    closes any file: the thread never writes a closed descriptor, nothing is left open, and
    what it made durable is acknowledged."""
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


async def test_the_appends_of_one_loop_iteration_share_the_next_round_of_a_busy_thread(
    tmp_path: Path,
) -> None:
    """Appends made in one loop iteration while a round is in flight reach the thread together
    and form its next round, even if the round in flight ends between them: their three files
    are synced at once (a barrier of 3 in the seam). Put one by one, the thread took the first
    as a round of its own (the barrier broke: the appends failed)."""
    first_started = threading.Event()
    release = threading.Event()
    barrier = threading.Barrier(3, timeout=20)
    calls: list[int] = []

    def sync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            first_started.set()
            release.wait(30)
        elif len(calls) <= 4:
            barrier.wait()
        segments.sync(fd)

    async def end_the_round_in_flight() -> None:
        release.set()
        # Blocks the loop mid-iteration (the point of it) while the thread ends the held round.
        time.sleep(0.2)  # noqa: ASYNC251

    log = LocalLog(tmp_path, 3, sync_file=sync)
    await log.start()
    try:
        held = asyncio.create_task(log.append(0, [b"held"]))
        assert await asyncio.to_thread(first_started.wait, 20)
        # Their first steps run in one iteration, in this order.
        results = await asyncio.gather(
            log.append(0, [b"a"]),
            end_the_round_in_flight(),
            log.append(1, [b"b"]),
            log.append(2, [b"c"]),
        )
        assert await held == 0
        assert [results[0], results[2], results[3]] == [1, 0, 0]
        assert len(calls) == 4
    finally:
        release.set()
        await log.close()
