"""Appends a leader's records, fenced with its epoch (DESIGN §5, leadership and fencing)."""

from __future__ import annotations

from collections.abc import Sequence

from partition_processor.commands import (
    Command,
    Envelope,
    LeaderDedup,
    LeaderSource,
    encode_envelope,
)
from runtime.clock import now_ms
from runtime.log import Log


class LeaderProposer:
    """Every record it appends carries ``Leader(epoch, seq)``; apply drops stale epochs."""

    def __init__(self, log: Log, partition: int, epoch: int, node: str) -> None:
        self._log = log
        self.partition = partition
        self.epoch = epoch
        self._source = LeaderSource(partition, epoch, node)
        self._seq = 0

    async def propose(self, commands: Sequence[Command]) -> int:
        """Append ``commands`` in order; returns the LSN of the last one once durable."""
        timestamp = now_ms()
        payloads = []
        for command in commands:
            self._seq += 1
            envelope = Envelope(
                self._source, timestamp, command, LeaderDedup(self.epoch, self._seq)
            )
            payloads.append(encode_envelope(envelope))
        return await self._log.append(self.partition, payloads)
