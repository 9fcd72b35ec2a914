"""The one seam to the log (DESIGN §3).

A log has a fixed number of partitions. Each partition is an ordered sequence of opaque records;
the position of a record is its LSN, starting at 0 (for Kafka, the offset). Appends to a
partition are ordered: a caller that awaits ``append`` and then appends again sees its records in
that order. Everything above this seam treats records as bytes.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Sequence

import msgspec


class LogError(Exception):
    """The log could not complete an operation (I/O failure, broker unavailable, closed log)."""


class LogRecord(msgspec.Struct, frozen=True):
    """One record read back from a partition."""

    lsn: int
    payload: bytes


class ReadHint:
    """What a reader tells its log between batches: ``idle`` while it will take no records for
    a while (a paced standby between its batches), so that a log fetching ahead of its readers
    (Kafka) leaves the partition out of its fetches meanwhile, and fetches it again once the
    reader is ``idle`` no more. Only a hint: records are never lost or skipped by it, and a log
    that reads on demand (LocalLog) ignores it."""

    def __init__(self) -> None:
        self.idle = False
        self._listener: Callable[[bool], None] | None = None

    def set_idle(self, idle: bool) -> None:
        if idle != self.idle:
            self.idle = idle
            if self._listener is not None:
                self._listener(idle)

    def listen(self, listener: Callable[[bool], None] | None) -> None:
        """(The log's side, while a read uses this hint) called with each change of ``idle``."""
        self._listener = listener


class Log(abc.ABC):
    """A partitioned, durable, append-only log."""

    @property
    @abc.abstractmethod
    def partitions(self) -> int:
        """The number of partitions, fixed when the log is created."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Open files / connect, creating the log (or topic) if it does not exist."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every resource. Idempotent. Pending readers end."""

    @abc.abstractmethod
    async def append(
        self, partition: int, records: Sequence[bytes], keys: Sequence[bytes] | None = None
    ) -> int:
        """Append ``records`` in order and return the LSN of the last one.

        ``keys`` (one per record, or None) name the fact each record states, for a log that
        compacts (the Kafka metadata topic keeps the last record of each key); a log that does
        not compact ignores them, so a record's meaning never depends on its key.

        Returns only once the records are durable (LocalLog: fsynced; Kafka: acks=all). The
        records of one call get consecutive LSNs. ``records`` must not be empty (``ValueError``).
        On ``LogError`` some of the records may have been appended, and a cancelled append may
        still complete: records must be safe to append twice (DESIGN §5 dedup).
        """

    @abc.abstractmethod
    def read(
        self, partition: int, from_lsn: int, hint: ReadHint | None = None
    ) -> AsyncIterator[list[LogRecord]]:
        """Tail the partition from ``from_lsn``: yield non-empty batches in LSN order, forever.

        The iterator waits for new records when it reaches the end; it stops when the log is
        closed or the consumer stops iterating (call ``aclose()`` to release it promptly).
        Batches are capped (about 256 records or 1 MiB). ``from_lsn`` must be at most
        ``tail(partition)``, else the iterator raises ``LogError``; below a trim point it raises
        ``LogError`` where records were deleted (LocalLog always, Kafka if the broker trimmed).
        ``hint``: the reader's ``ReadHint`` (``idle`` between batches it takes late on purpose).
        """

    @abc.abstractmethod
    async def tail(self, partition: int) -> int:
        """The LSN the next appended record will get (0 for an empty partition)."""

    @abc.abstractmethod
    async def first_lsn(self, partition: int) -> int:
        """The lowest LSN still readable: 0, or the trim point once records were deleted.

        A reader whose position is below it cannot continue from the log (its records are
        gone) and must restore a snapshot first.
        """

    @abc.abstractmethod
    async def trim(self, partition: int, upto_lsn: int) -> None:
        """Allow records with LSN < ``upto_lsn`` to be discarded.

        Best effort: a backend that cannot delete (a broker without DeleteRecords) keeps them.
        Reads from below the trim point are not supported afterwards.
        """
