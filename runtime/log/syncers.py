"""What makes a commit round's files durable for ``LocalLog``: a child process (the default) or
threads of this process (when a test hands the log its own ``sync_file``).

A ``Syncer.sync(fds)`` returns a future that resolves once every file of ``fds`` is durable, or
fails with the first failure once every fsync of the request has returned (no file of the round
is in use when the writer goes on). It must be called on the loop that awaits it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from runtime.log import fsync_helper
from runtime.log.fsync_helper import FDS_PER_REQUEST, SEQ, SyncCrew

_log = logging.getLogger(__name__)

# How long ``close`` waits for the child to exit once its socket is closed (it finishes the
# fsync in flight first), before it is killed.
_EXIT_WAIT_S = 10.0
# Run by path with ``python -I -S`` (it imports only the standard library): a fast start that no
# environment variable or site-packages can change.
_HELPER = str(Path(fsync_helper.__file__))


class Syncer(Protocol):
    def sync(self, fds: list[int]) -> asyncio.Future[None]: ...

    async def close(self) -> None: ...


class FsyncProcess:
    """Syncs in a child process (``runtime/log/fsync_helper.py``), started with the first request.

    A request is one datagram on a socket pair and its answer one back, read by a reader callback
    on the event loop: no thread of this process takes part, so none waits for the GIL the loop
    holds. The child exiting (killed, say) fails the requests in flight and every later one with
    ``OSError``: the log then refuses appends until a restart, as after a failed fsync.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        # The logs that sync here (``share``): the process ends with the last one's ``close``.
        self._users = 1
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._gone: OSError | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id, once started."""
        return None if self._process is None else self._process.pid

    def share(self) -> FsyncProcess:
        """One more log syncs here (a node's metadata log shares its partitions' process)."""
        self._users += 1
        return self

    def sync(self, fds: list[int]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if self._gone is not None:
            failed: asyncio.Future[None] = loop.create_future()
            failed.set_exception(self._gone)
            return failed
        sock = self._started(loop)
        parts = []
        for start in range(0, len(fds), FDS_PER_REQUEST):
            seq = next(self._seq)
            done: asyncio.Future[None] = loop.create_future()
            self._waiting[seq] = done
            try:
                socket.send_fds(sock, [SEQ.pack(seq)], fds[start : start + FDS_PER_REQUEST])
            except OSError as exc:
                # A datagram of 8 bytes does not fill the socket's buffer unless the child
                # stopped reading: treat it as gone.
                reason = f"{self._name}: cannot reach the fsync process: {exc}"
                self._fail_all(OSError(exc.errno, reason))
            parts.append(done)
        return parts[0] if len(parts) == 1 else _all_of(loop, parts)

    async def close(self) -> None:
        """One log is done with it; after the last, close the socket (the child exits after the
        fsync in flight) and wait for the child."""
        self._users -= 1
        if self._users > 0:
            return
        if self._sock is not None:
            assert self._loop is not None
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        self._fail_all(OSError(f"{self._name}: the log is closed"))
        process, self._process = self._process, None
        if process is not None:
            try:
                await asyncio.to_thread(process.wait, _EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                _log.warning("%s: the fsync process did not exit; killing it", self._name)
                process.kill()
                await asyncio.to_thread(process.wait)

    def _started(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        if self._sock is not None:
            return self._sock
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", _HELPER, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        loop.add_reader(ours.fileno(), self._on_readable)
        self._sock, self._loop = ours, loop
        return ours

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            error: OSError | None = None
            try:
                answer = sock.recv(4096)
            except BlockingIOError:
                return
            except OSError as exc:
                answer, error = b"", exc
            if not answer:
                self._child_exited(error)
                return
            done = self._waiting.pop(SEQ.unpack_from(answer)[0], None)
            if done is None or done.done():
                continue
            failure = answer[SEQ.size :].decode(errors="replace")
            if failure:
                done.set_exception(OSError(f"{self._name}: fsync failed: {failure}"))
            else:
                done.set_result(None)

    def _child_exited(self, error: OSError | None) -> None:
        assert self._sock is not None and self._loop is not None
        self._loop.remove_reader(self._sock.fileno())
        code = None if self._process is None else self._process.poll()
        reason = f"exit code {code}" if code is not None else f"{error or 'its socket closed'}"
        _log.error("%s: the fsync process ended (%s); appends are refused", self._name, reason)
        self._fail_all(OSError(f"{self._name}: the fsync process ended ({reason})"))

    def _fail_all(self, error: OSError) -> None:
        self._gone = self._gone or error
        waiting, self._waiting = self._waiting, {}
        for done in waiting.values():
            if not done.done():
                done.set_exception(self._gone)


def _all_of(
    loop: asyncio.AbstractEventLoop, parts: list[asyncio.Future[None]]
) -> asyncio.Future[None]:
    """One future for several requests: done when all are, failing with the first failure."""
    combined: asyncio.Future[None] = loop.create_future()
    remaining = len(parts)

    def one_done(_: asyncio.Future[None]) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining or combined.done():
            return
        failures = [p.exception() for p in parts if p.exception() is not None]
        if failures:
            combined.set_exception(failures[0])  # type: ignore[arg-type]
        else:
            combined.set_result(None)

    for part in parts:
        part.add_done_callback(one_done)
    return combined


class ThreadSyncer:
    """Syncs on a thread of this process through ``sync_file``: the seam a test uses to hold,
    count or fail fsyncs (``LocalLog(sync_file=...)``). A request's files are synced at once,
    one on the syncing thread ``cairn-log-syncer`` and the others on its crew."""

    def __init__(self, sync_file: Callable[[int], None]) -> None:
        self._crew = SyncCrew(sync_file)
        self._requests: queue.SimpleQueue[
            tuple[list[int], asyncio.AbstractEventLoop, asyncio.Future[None]] | None
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def sync(self, fds: list[int]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if self._thread is None:
            # A daemon, so that a log never closed (a crashed test) does not keep a process alive.
            self._thread = threading.Thread(target=self._run, name="cairn-log-syncer", daemon=True)
            self._thread.start()
        self._requests.put((fds, loop, done))
        return done

    async def close(self) -> None:
        """End the thread after the requests already handed over, and wait for it and its crew."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._requests.put(None)
            await asyncio.to_thread(thread.join)
        self._crew.stop()

    def _run(self) -> None:
        while (request := self._requests.get()) is not None:
            fds, loop, done = request
            outcome: BaseException | None = None
            try:
                self._crew.sync_all(fds)
            except BaseException as exc:  # noqa: BLE001 - handed to the round, which raises
                outcome = exc
            try:
                loop.call_soon_threadsafe(_settle, done, outcome)
            except RuntimeError:
                pass  # the loop is closed: nobody waits for this request any more


def _settle(done: asyncio.Future[None], outcome: BaseException | None) -> None:
    if done.done():
        return
    if outcome is None:
        done.set_result(None)
    else:
        done.set_exception(outcome)
