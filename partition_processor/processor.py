"""One partition's processor: batch → apply → one atomic write → actions for the leader.

The processor is synchronous and does no log I/O: the runtime reads batches from the log, hands
them here, and executes the returned actions only after ``apply_batch`` has committed them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

import msgspec

from partition_processor import keys
from partition_processor.actions import Action, StartInvocation
from partition_processor.commands import Envelope, decode_envelope
from partition_processor.state_machine import Drop, apply
from partition_processor.state_machine.reject import advance_dedup, reject
from partition_processor.tables import Store, Transaction, decode_status, read_fsm
from partition_processor.values import FsmState


class LogEntry(msgspec.Struct, frozen=True):
    """A record as the processor receives it: its LSN and encoded envelope."""

    lsn: int
    payload: bytes


class Rejection(msgspec.Struct, frozen=True):
    """A record that could not be applied: its invocation failed instead, or it was dropped.

    ``reason`` is a metric label: ``undecodable`` (dropped), ``failed_invocation`` or
    ``dropped`` (its apply raised and it belongs to no live invocation).
    """

    lsn: int
    reason: str
    detail: str
    invocation_id: str | None = None


class ApplyStats(msgspec.Struct):
    """What happened to a batch's records: applied, or dropped by which guard. Tests sum these
    to check that every injected fault met the guard meant for it."""

    applied: int = 0
    stale_epoch: int = 0
    producer_repeats: int = 0
    no_effect: int = 0
    undecodable: int = 0

    @property
    def dropped(self) -> int:
        return self.stale_epoch + self.producer_repeats + self.no_effect + self.undecodable

    def __add__(self, other: ApplyStats) -> ApplyStats:
        mine, theirs = msgspec.structs.astuple(self), msgspec.structs.astuple(other)
        return ApplyStats(*(a + b for a, b in zip(mine, theirs, strict=True)))

    def count(self, drop: Drop | None) -> None:
        match drop:
            case None:
                self.applied += 1
            case Drop.STALE_EPOCH:
                self.stale_epoch += 1
            case Drop.PRODUCER_REPEAT:
                self.producer_repeats += 1
            case Drop.NO_EFFECT:
                self.no_effect += 1
            case _:
                assert_never(drop)


class BatchOutcome(msgspec.Struct):
    """What a committed batch asks of the runtime."""

    actions: list[Action]
    is_leader: bool
    leader_epoch: int
    applied_lsn: int
    stats: ApplyStats = msgspec.field(default_factory=ApplyStats)
    rejected: list[Rejection] = []

    @property
    def dropped(self) -> int:
        return self.stats.dropped


class PartitionProcessor:
    """Applies log records of one partition to the store, exactly once each."""

    def __init__(self, store: Store, partition: int, node: str) -> None:
        self.store = store
        self.partition = partition
        self.node = node

    @property
    def fsm(self) -> FsmState:
        return read_fsm(self.store, self.partition)

    def apply_batch(self, records: Sequence[LogEntry]) -> BatchOutcome:
        """Apply records above ``applied_lsn`` and commit them with it in one write batch.

        Actions are kept only for records applied while this node is the leader: actions of
        earlier records belong to the previous leader (a new leader resumes from the store).
        """
        tx = Transaction(self.store, self.partition)
        actions: list[Action] = []
        rejected: list[Rejection] = []
        stats = ApplyStats()
        for record in records:
            if record.lsn <= tx.fsm.applied_lsn:
                continue  # already applied before a restart
            record_actions: list[Action] = []
            try:
                envelope = decode_envelope(record.payload)
            except msgspec.DecodeError as exc:
                rejected.append(Rejection(record.lsn, "undecodable", str(exc)))
                stats.undecodable += 1
            else:
                savepoint = tx.savepoint()
                try:
                    stats.count(apply(tx, envelope, record_actions))
                except MemoryError:
                    # Not a property of the record: another replica might apply it fine, so
                    # failing the invocation here could diverge. Let the worker restart.
                    raise
                except Exception as exc:  # noqa: BLE001 - apply is total (DESIGN §11)
                    tx.rollback(savepoint)
                    record_actions = []
                    rejected.append(self._reject(tx, envelope, record.lsn, exc, record_actions))
            tx.fsm = msgspec.structs.replace(tx.fsm, applied_lsn=record.lsn)
            if tx.fsm.leader_node == self.node:
                actions.extend(record_actions)
        fsm_key, fsm_value = tx.encoded_fsm()
        tx.writes[fsm_key] = fsm_value
        self.store.commit(tx.writes)
        return BatchOutcome(
            actions=actions,
            is_leader=tx.fsm.leader_node == self.node,
            leader_epoch=tx.fsm.leader_epoch,
            applied_lsn=tx.fsm.applied_lsn,
            stats=stats,
            rejected=rejected,
        )

    @staticmethod
    def _reject(
        tx: Transaction, envelope: Envelope, lsn: int, exc: Exception, actions: list[Action]
    ) -> Rejection:
        """Fail the record's invocation in its place; if even that raises, drop the record.

        The reason is built from the exception's type and text only, which are the same on
        every replica and replay of this code, so followers store the same failure.
        """
        detail = f"{type(exc).__name__}: {exc}"
        if len(detail) > 1000:
            detail = detail[:1000] + "..."
        try:
            advance_dedup(tx, envelope)
        except Exception:  # noqa: BLE001 - a producer id too long for a key: nothing to keep
            pass
        savepoint = tx.savepoint()
        try:
            failed = reject(tx, envelope, detail, actions)
        except MemoryError:
            raise
        except Exception as fallback_exc:  # noqa: BLE001 - then the record belongs to no one
            tx.rollback(savepoint)
            actions.clear()
            detail += f"; failing its invocation raised {type(fallback_exc).__name__}"
            return Rejection(lsn, "dropped", detail)
        if failed is None:
            return Rejection(lsn, "dropped", detail)
        return Rejection(lsn, "failed_invocation", detail, failed)

    def invocations_to_resume(self) -> list[StartInvocation]:
        """Attempts that were running under a previous leader: a new leader starts them again."""
        resumed = []
        for _, raw in self.store.scan(keys.partition_prefix(keys.Kind.STATUS, self.partition)):
            status = decode_status(raw)
            if status.phase == "invoked":
                resumed.append(StartInvocation(status.invocation_id, status.attempt))
        return resumed

    def pending_timers(
        self, start: bytes | None = None, limit: int | None = None
    ) -> list[tuple[int, str]]:
        """Timer rows earliest first (from the timer key ``start`` on, at most ``limit``): the
        leader's timer service loads them a window at a time."""
        prefix = keys.partition_prefix(keys.Kind.TIMER, self.partition)
        return [keys.parse_timer_key(key) for key, _ in self.store.scan(prefix, start, limit)]
