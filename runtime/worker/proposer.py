"""A leader's term: its records are fenced with ``Leader(epoch, seq)`` (DESIGN §5)."""

from __future__ import annotations

from collections.abc import Sequence

from partition_processor.commands import (
    Command,
    Envelope,
    LeaderDedup,
    LeaderSource,
    encode_envelope,
)
from runtime.clock import Clock
from runtime.log import Log


class Term:
    """One leadership of one partition, sans-I/O: stamps proposals with its epoch and a seq.

    Apply drops every record whose epoch is not the current one, so whatever a term proposes
    after a newer announcement has no effect.
    """

    def __init__(self, partition: int, epoch: int, node: str) -> None:
        self.partition = partition
        self.epoch = epoch
        self._source = LeaderSource(partition, epoch, node)
        self._seq = 0

    def stamp(self, commands: Sequence[Command], now_ms: int) -> list[bytes]:
        """The encoded records proposing ``commands``, in order."""
        payloads = []
        for command in commands:
            self._seq += 1
            envelope = Envelope(self._source, now_ms, command, LeaderDedup(self.epoch, self._seq))
            payloads.append(encode_envelope(envelope))
        return payloads


class LeaderProposer:
    """Appends a term's proposals to the log (the invoker's attempts propose through it)."""

    def __init__(self, log: Log, term: Term, clock: Clock) -> None:
        self._log = log
        self._term = term
        self._clock = clock
        self.partition = term.partition
        self.epoch = term.epoch

    async def propose(self, commands: Sequence[Command]) -> int:
        """Append ``commands`` in order; returns the LSN of the last one once durable."""
        return await self._log.append(
            self.partition, self._term.stamp(commands, self._clock.now_ms())
        )
