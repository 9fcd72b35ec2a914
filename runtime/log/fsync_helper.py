"""The embedded log's fsync process, and the crew of threads that syncs a round's files at once.

``LocalLog`` writes a round's frames on the event loop and has them made durable here, in a
child process with its own GIL (``runtime.log.syncers.FsyncProcess``): with the fsyncs on
threads of the node's own process, every wake-up of those threads (taking a round, returning
from each fsync, handing the outcome back) waited for the GIL the busy event loop held, and took
it from the loop in turn (issue 10: about 1.3 ms of a 4 ms append, under load, was a thread
waiting to run again).

Protocol, over a ``SOCK_SEQPACKET`` socket pair (one message per datagram): a request is an
8-byte sequence number with the file descriptors to sync attached (``SCM_RIGHTS``: the child
gets duplicates of the log's own descriptors, and fsync flushes the file, whichever descriptor
of it is used); the answer is the same 8 bytes, followed by nothing when every file is durable
or by the first failure's text. The child closes its duplicates once synced and exits when the
log closes the socket (or its process dies); it ignores the stop signals a process group gets.
Only the standard library is imported: the child is started with ``python -I -S`` from this
file's path.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable

# Most descriptors one request carries (the kernel's limit per message is 253).
FDS_PER_REQUEST = 200
SEQ = struct.Struct(">Q")
# Most fsyncs in flight at once (the caller's own and its crew's): past about 8 a virtual disk
# gains nothing more.
SYNCS_IN_FLIGHT = 8

_Outcome = BaseException | None


def sync(fd: int) -> None:
    """fdatasync: enough for appends (it still flushes the file size), cheaper than fsync."""
    getattr(os, "fdatasync", os.fsync)(fd)


class SyncCrew:
    """Threads that fsync a round's other files while the calling thread syncs one itself.

    The device flushes several files' data at once (3x faster for 24 files here than one by
    one): the round is durable when every one of them is. A job is one ``SimpleQueue`` put and
    its outcome one put back. Threads start as rounds first need them and end with ``stop``.
    """

    def __init__(self, sync_file: Callable[[int], None]) -> None:
        self._sync_file = sync_file
        # Only one caller hands out jobs, one round at a time: one outcome queue.
        self._jobs: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._outcomes: queue.SimpleQueue[_Outcome] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def sync_all(self, fds: list[int]) -> None:
        """Sync every file of ``fds`` at once (the first on this thread); return when all
        have returned, raising the first failure (after the others are done: none is still
        syncing a file when the caller goes on, say to close it)."""
        others = fds[1:]
        while len(self._threads) < min(len(others), SYNCS_IN_FLIGHT - 1):
            thread = threading.Thread(
                target=self._run, name=f"cairn-fsync-{len(self._threads)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        for fd in others:
            self._jobs.put(fd)
        failure: _Outcome = None
        try:
            self._sync_file(fds[0])
        except BaseException as exc:  # noqa: BLE001 - raised below, once the others are done
            failure = exc
        for _ in others:
            outcome = self._outcomes.get()
            if failure is None:
                failure = outcome
        if failure is not None:
            raise failure

    def stop(self) -> None:
        """End the threads (idle: every round waits for its own jobs) and wait for them."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _run(self) -> None:
        while (fd := self._jobs.get()) is not None:
            try:
                self._sync_file(fd)
            except BaseException as exc:  # noqa: BLE001 - handed to the round, which raises
                self._outcomes.put(exc)
            else:
                self._outcomes.put(None)


def serve(sock: socket.socket) -> None:
    """Answer sync requests on ``sock`` until the other side closes it."""
    crew = SyncCrew(sync)
    try:
        while True:
            try:
                message, fds, _flags, _addr = socket.recv_fds(sock, 64, FDS_PER_REQUEST)
            except ConnectionResetError:
                return
            if not message:
                return  # the log closed the socket, or its process is gone
            error = ""
            try:
                if fds:
                    crew.sync_all(fds)
            except OSError as exc:
                error = f"[Errno {exc.errno}] {exc.strerror or exc}"
            except Exception as exc:  # noqa: BLE001 - reported to the log, which fails the round
                error = repr(exc)
            finally:
                for fd in fds:
                    os.close(fd)
            try:
                sock.send(message[: SEQ.size] + error.encode())
            except (BrokenPipeError, ConnectionResetError):
                return
    finally:
        crew.stop()


if __name__ == "__main__":
    # Its life is its socket's: a Ctrl-C or a stop signal sent to the node's whole process group
    # (a terminal, systemd) must not end it before the node has written what is queued.
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.SIG_IGN)
    serve(socket.socket(fileno=int(sys.argv[1])))
