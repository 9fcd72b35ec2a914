"""A test harness around the pure processor: in-memory store, records in, actions out."""

from __future__ import annotations

from partition_processor.actions import Action
from partition_processor.commands import (
    AnnounceLeader,
    Command,
    Effect,
    Envelope,
    IngressSink,
    IngressSource,
    Invoke,
    InvokerEffect,
    LeaderDedup,
    LeaderSource,
    RetryPolicy,
    Target,
    encode_envelope,
)
from partition_processor.processor import LogEntry, PartitionProcessor
from partition_processor.store_memory import MemoryStore
from partition_processor.tables import Transaction
from partition_processor.values import InvocationStatus

NODE = "node-a/1"
COUNTER = Target("Counter", "add", "virtual_object", "exclusive", key="k1")
COUNTER_GET = Target("Counter", "get", "virtual_object", "shared", key="k1")
GREETER = Target("Greeter", "greet")


class Env:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.processor = PartitionProcessor(self.store, 0, NODE)
        self.lsn = 0
        self.payloads: list[bytes] = []  # every record applied, by lsn
        self.now_ms = 1_000
        self.epoch = 0
        self.become_leader()

    def record(self, command: Command, *, leader: bool = False, epoch: int | None = None) -> bytes:
        if leader:
            dedup = LeaderDedup(self.epoch if epoch is None else epoch, self.lsn)
            source: LeaderSource | IngressSource = LeaderSource(0, self.epoch, NODE)
        else:
            dedup, source = None, IngressSource(NODE)
        return encode_envelope(Envelope(source, self.now_ms, command, dedup))

    def apply_raw(self, *payloads: bytes) -> list[Action]:
        entries = []
        for payload in payloads:
            entries.append(LogEntry(self.lsn, payload))
            self.payloads.append(payload)
            self.lsn += 1
        return self.processor.apply_batch(entries).actions

    def record_at(self, lsn: int) -> bytes:
        """The payload applied at ``lsn`` (to replay the log on another processor)."""
        return self.payloads[lsn]

    def apply(self, command: Command, **kwargs: object) -> list[Action]:
        return self.apply_raw(self.record(command, **kwargs))  # type: ignore[arg-type]

    def effect(self, invocation_id: str, attempt: int, effect: Effect) -> list[Action]:
        return self.apply(InvokerEffect(invocation_id, attempt, effect), leader=True)

    def become_leader(self) -> None:
        self.epoch += 1
        self.apply(AnnounceLeader(self.epoch, NODE))

    def invoke(
        self,
        invocation_id: str,
        target: Target = GREETER,
        *,
        request: str | None = "r1",
        retention_ms: int = 0,
        policy: RetryPolicy | None = None,
    ) -> list[Action]:
        sink = IngressSink(NODE, request) if request else None
        return self.apply(
            Invoke(
                invocation_id,
                target,
                b'"x"',
                sink=sink,
                retry_policy=policy or RetryPolicy(),
                completion_retention_ms=retention_ms,
            )
        )

    def status(self, invocation_id: str) -> InvocationStatus | None:
        return Transaction(self.store, 0).status(invocation_id)

    def tx(self) -> Transaction:
        return Transaction(self.store, 0)
