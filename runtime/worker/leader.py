"""The leader shell of one partition, sans-I/O (DESIGN §5, §9).

``PartitionLeader`` holds what a node knows about leading a partition: whether it owns it, its
claim (catch up to the tail, then announce a new epoch), the term it leads, the attempts it has
started, its timers and its outbox position. It does no I/O and reads no clock: it is fed batch
outcomes, the log's tail, clock ticks and stream events, and returns ``Output`` commands for its
driver to carry out. ``runtime.worker.partition`` drives it against the real log, clock and
invoker; ``tests/simulation`` drives the very same object against a fake log, clock and SDK.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import assert_never

from partition_processor.actions import (
    AbortInvocation,
    Action,
    CancelInvocation,
    NotifyInvocationId,
    NotifyInvoker,
    RegisterTimer,
    RespondToIngress,
    ShipOutbox,
    StartInvocation,
)
from partition_processor.commands import (
    AnnounceLeader,
    Envelope,
    LeaderSource,
    TimerFired,
    TruncateOutbox,
    encode_envelope,
)
from partition_processor.processor import BatchOutcome, PartitionProcessor
from partition_processor.tables import read_outbox
from runtime.worker.outbox import Shipment, plan_shipment
from runtime.worker.proposer import Term
from runtime.worker.timers import DEFAULT_CAPACITY, Timer, TimerQueue

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- outputs (commands to the driver)


@dataclass(frozen=True, slots=True)
class ReadTail:
    """Find the partition's tail and report it with ``on_tail`` (the claim catches up to it)."""


@dataclass(frozen=True, slots=True)
class Announce:
    """Append this ``AnnounceLeader`` record to the partition (after any earlier claim step)."""

    record: bytes


@dataclass(frozen=True, slots=True)
class Lead:
    """This node now leads at ``term``: start its invoker, timers and outbox shipping."""

    term: Term


@dataclass(frozen=True, slots=True)
class StepDown:
    """This node no longer leads: stop every attempt, the timers and the shipping at once."""


@dataclass(frozen=True, slots=True)
class StartAttempt:
    """Open a stream for this attempt (replacing a lower-numbered one), proposing with ``term``."""

    action: StartInvocation
    term: Term


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand this notification to the running attempt it names."""

    action: NotifyInvoker | NotifyInvocationId | CancelInvocation


@dataclass(frozen=True, slots=True)
class AbortAttempt:
    """Close this invocation's attempt now, proposing nothing more (it was killed)."""

    invocation_id: str


@dataclass(frozen=True, slots=True)
class Respond:
    """Give a result to the ingress request waiting for it."""

    action: RespondToIngress


@dataclass(frozen=True, slots=True)
class Propose:
    """Append these records (already stamped with the term) to the partition."""

    records: list[bytes]


@dataclass(frozen=True, slots=True)
class FireTimers:
    """Append these ``TimerFired`` records; on failure report ``timers_failed(timers)``."""

    timers: list[Timer]
    records: list[bytes]


@dataclass(frozen=True, slots=True)
class WakeTimers:
    """A timer was registered ahead of the earliest one: the next wake-up is earlier."""


@dataclass(frozen=True, slots=True)
class WakeOutbox:
    """Outbox rows were written: call ``ship``."""


Output = (
    ReadTail
    | Announce
    | Lead
    | StepDown
    | StartAttempt
    | Deliver
    | AbortAttempt
    | Respond
    | Propose
    | FireTimers
    | WakeTimers
    | WakeOutbox
)


# ---------------------------------------------------------------- the leader


class _Leading:
    """What exists only while this node leads the partition (lost on stepping down)."""

    def __init__(self, term: Term, timers: TimerQueue) -> None:
        self.term = term
        self.timers = timers
        self.running: dict[str, int] = {}  # invocation id → attempt number started
        self.shipped_upto = 0
        self.shipping = False


class PartitionLeader:
    """One node's leadership of one partition, sans-I/O.

    Ownership: a single node owns every partition; in a cluster the group assignment decides.
    Owning means announcing a new epoch once caught up, and again whenever another node's
    announcement wins while this node still owns the partition. The node leads from the moment
    its announcement is applied until a newer one is.
    """

    def __init__(
        self,
        processor: PartitionProcessor,
        *,
        partitions: int,
        owned: bool,
        timer_capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self.processor = processor
        self.partition = processor.partition
        self.node = processor.node
        self._partitions = partitions
        self._timer_capacity = timer_capacity
        self._owned = owned
        self._announced_epoch = 0
        self._claim_requested = False
        self._claiming = False  # a claim is waiting for the tail, or to catch up to it
        self._announce_at: int | None = None  # the LSN to apply before announcing
        self._leading: _Leading | None = None

    # -- what the driver and tests read

    @property
    def term(self) -> Term | None:
        return self._leading.term if self._leading is not None else None

    @property
    def owned(self) -> bool:
        return self._owned

    @property
    def timers(self) -> TimerQueue | None:
        return self._leading.timers if self._leading is not None else None

    def next_wake_ms(self) -> int | None:
        """When the earliest timer is due (None: none, or not leading)."""
        return self._leading.timers.next_wake_ms() if self._leading is not None else None

    def has_unshipped(self) -> bool:
        """Whether ``ship`` has something to deliver now."""
        leading = self._leading
        if leading is None or leading.shipping:
            return False
        rows = read_outbox(self.processor.store, self.partition)
        return any(seq > leading.shipped_upto for seq, _ in rows)

    # -- ownership and the claim

    def start(self) -> list[Output]:
        """The worker (re)starts: an owner claims the partition again."""
        self._claiming = False  # a claim cut short by a failed worker starts over
        self._claim_requested = False
        return self.claim() if self._owned else []

    def stop(self) -> list[Output]:
        """The worker stops (or failed): stop leading; ownership stays for the restart."""
        self._claiming = False
        return self._step_down()

    def claim(self) -> list[Output]:
        """Lead this partition: announce a new epoch once applied up to the log's tail."""
        self._owned = True
        return self._request_claim()

    def release(self) -> list[Output]:
        """Stop leading (another node is taking the partition over); keep applying."""
        self._owned = False
        self._claim_requested = False
        return self._step_down()

    def hand_over(self) -> list[Output]:
        """Another node is to lead: stop owning, but go on leading until its announcement is
        applied (``on_batch`` steps down then, and does not claim back). The partition is never
        unled while the new leader catches up; the log's epochs fence the overlap."""
        self._owned = False
        self._claim_requested = False
        return []

    def claim_failed(self) -> list[Output]:
        """A claim step (``ReadTail`` or ``Announce``) could not be carried out: an owner that
        does not lead yet starts the claim over (else the partition would stay unled)."""
        self._claiming = False
        self._announce_at = None
        if not self._owned:
            return []
        return self._request_claim()

    def on_tail(self, tail: int, now_ms: int) -> list[Output]:
        """The log's tail, as ``ReadTail`` asked: announce once applied up to it."""
        self._announce_at = tail - 1
        return self._check_caught_up(now_ms)

    def _request_claim(self) -> list[Output]:
        self._claim_requested = True
        return self._advance_claim()

    def _advance_claim(self) -> list[Output]:
        """Start the next claim, unless one is under way (claims are taken one at a time)."""
        if self._claiming or not self._claim_requested:
            return []
        self._claim_requested = False
        if not self._owned or self._leading is not None:
            return []
        self._claiming = True
        self._announce_at = None
        return [ReadTail()]

    def _check_caught_up(self, now_ms: int) -> list[Output]:
        if not self._claiming or self._announce_at is None:
            return []  # (checked first: reading the fsm costs a store read per batch)
        fsm = self.processor.fsm
        if fsm.applied_lsn < self._announce_at:
            return []
        self._claiming = False
        outputs: list[Output] = []
        if self._owned and self._leading is None:
            epoch = fsm.leader_epoch + 1
            self._announced_epoch = epoch
            source = LeaderSource(self.partition, epoch, self.node)
            record = Envelope(source, now_ms, AnnounceLeader(epoch, self.node))
            outputs.append(Announce(encode_envelope(record)))
        return outputs + self._advance_claim()

    # -- batches

    def on_batch(self, outcome: BatchOutcome, now_ms: int) -> list[Output]:
        """A batch was committed: follow leadership changes, then carry out its actions."""
        outputs: list[Output] = []
        leads_at = self._leading.term.epoch if self._leading is not None else None
        if outcome.is_leader and leads_at != outcome.leader_epoch:
            # Elected, or re-elected at a newer epoch (this node announced again): records
            # proposed with the old epoch would be dropped, so lead afresh at the new one.
            outputs += self._step_down()
            outputs += self._lead(outcome.leader_epoch)
        elif not outcome.is_leader and self._leading is not None:
            log.warning("partition %d: deposed by epoch %d", self.partition, outcome.leader_epoch)
            outputs += self._step_down()
        if self._owned and not outcome.is_leader and outcome.leader_epoch >= self._announced_epoch:
            outputs += self._request_claim()  # owned, but another announcement won (or none)
        outputs += self._check_caught_up(now_ms)
        if self._leading is not None:
            for action in outcome.actions:
                outputs += self._execute(self._leading, action)
        return outputs

    def _lead(self, epoch: int) -> list[Output]:
        log.info("partition %d: leader at epoch %d", self.partition, epoch)
        term = Term(self.partition, epoch, self.node)
        timers = TimerQueue(self.partition, self.processor.pending_timers, self._timer_capacity)
        leading = self._leading = _Leading(term, timers)
        outputs: list[Output] = [Lead(term), WakeTimers(), WakeOutbox()]  # what a leader left
        for start in self.processor.invocations_to_resume():
            outputs += self._start(leading, start)
        return outputs

    def _step_down(self) -> list[Output]:
        if self._leading is None:
            return []
        self._leading = None
        return [StepDown()]

    def _execute(self, leading: _Leading, action: Action) -> list[Output]:
        match action:
            case StartInvocation():
                return self._start(leading, action)
            case NotifyInvoker() | NotifyInvocationId() | CancelInvocation():
                if leading.running.get(action.invocation_id) == action.attempt:
                    return [Deliver(action)]
                return []
            case AbortInvocation(invocation_id=invocation_id):
                if leading.running.pop(invocation_id, None) is not None:
                    return [AbortAttempt(invocation_id)]
                return []
            case RespondToIngress():
                return [Respond(action)]
            case RegisterTimer(wake_ms=wake_ms, timer_id=timer_id):
                # Only a new earliest timer moves the driver's wake-up: a sleep, a retry or a
                # retention timer due after the head costs no wake-up of the timer task.
                return [WakeTimers()] if leading.timers.register(wake_ms, timer_id) else []
            case ShipOutbox():
                return [WakeOutbox()]
            case _:
                assert_never(action)

    # -- attempts

    def _start(self, leading: _Leading, action: StartInvocation) -> list[Output]:
        running = leading.running.get(action.invocation_id)
        if running is not None and running >= action.attempt:
            return []  # already running (a resume scan and a fresh start can both ask)
        leading.running[action.invocation_id] = action.attempt
        return [StartAttempt(action, leading.term)]

    def attempt_ended(self, invocation_id: str, attempt: int) -> None:
        """The stream of ``attempt`` closed (it ended, failed, suspended or was cancelled)."""
        if self._leading is not None and self._leading.running.get(invocation_id) == attempt:
            del self._leading.running[invocation_id]

    def running(self) -> dict[str, int]:
        """The attempts started and not yet ended, by invocation id."""
        return dict(self._leading.running) if self._leading is not None else {}

    # -- timers

    def tick(self, now_ms: int) -> FireTimers | None:
        """The clock reached ``now_ms``: propose the timers that are due."""
        leading = self._leading
        if leading is None:
            return None
        due = leading.timers.pop_due(now_ms)
        if not due:
            return None
        records = leading.term.stamp([TimerFired(wake, tid) for wake, tid in due], now_ms)
        return FireTimers(due, records)

    def timers_failed(self, timers: list[Timer]) -> None:
        """Their ``TimerFired`` could not be appended: fire them again later."""
        if self._leading is not None:
            self._leading.timers.restore(timers)

    # -- the outbox

    def ship(self, now_ms: int) -> Shipment | None:
        """The outbox rows not shipped yet by this term (one shipment at a time)."""
        leading = self._leading
        if leading is None or leading.shipping:
            return None
        shipment = plan_shipment(
            self.processor.store, self.partition, self._partitions, leading.shipped_upto, now_ms
        )
        leading.shipping = shipment is not None
        return shipment

    def shipped(self, shipment: Shipment, now_ms: int) -> Propose | None:
        """The shipment is durable in its partitions: drop its rows with ``TruncateOutbox``."""
        leading = self._leading
        if leading is None:
            return None
        leading.shipping = False
        leading.shipped_upto = shipment.upto_seq
        return Propose(leading.term.stamp([TruncateOutbox(shipment.upto_seq)], now_ms))

    def ship_failed(self) -> None:
        """The shipment could not be appended: ``ship`` offers the same rows again."""
        if self._leading is not None:
            self._leading.shipping = False
