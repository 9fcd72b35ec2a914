"""The sans-I/O leader shell: fed batch outcomes, the tail and clock ticks, it returns commands.

These pin its contract step by step; ``tests/simulation`` drives it through random runs.
"""

from __future__ import annotations

from partition_processor.commands import (
    AnnounceLeader,
    Effect,
    Envelope,
    IngressSource,
    Invoke,
    InvokerEffect,
    JournalAppend,
    LeaderDedup,
    ResolvedTarget,
    Suspended,
    TimerFired,
    TruncateOutbox,
    decode_envelope,
    encode_envelope,
)
from partition_processor.journal import CallTarget, OneWayCall, Sleep
from partition_processor.processor import LogEntry, PartitionProcessor
from partition_processor.store_memory import MemoryStore
from runtime.worker.leader import (
    Announce,
    Lead,
    Output,
    PartitionLeader,
    ReadTail,
    StartAttempt,
    StepDown,
    WakeOutbox,
    WakeTimers,
)
from tests.unit.partition_processor.env import GREETER, NODE

NOW_MS = 5_000
CALLEE = CallTarget("Greeter", "greet")


class Shell:
    """One partition's log, processor and leader shell on one node."""

    def __init__(self) -> None:
        self.log: list[bytes] = []
        self.processor = PartitionProcessor(MemoryStore(), 0, NODE)
        self.leader = PartitionLeader(self.processor, partitions=1, owned=True, timer_capacity=4)

    def append(self, *payloads: bytes) -> None:
        self.log.extend(payloads)

    def apply(self) -> list[Output]:
        start = self.processor.fsm.applied_lsn + 1
        entries = [LogEntry(lsn, self.log[lsn]) for lsn in range(start, len(self.log))]
        return self.leader.on_batch(self.processor.apply_batch(entries), NOW_MS)

    def lead(self) -> list[Output]:
        (read_tail,) = self.leader.start()
        assert read_tail == ReadTail()
        (announce,) = self.leader.on_tail(len(self.log), NOW_MS)
        assert isinstance(announce, Announce)
        self.append(announce.record)
        return self.apply()

    def ingress(self, command: object) -> bytes:
        return encode_envelope(Envelope(IngressSource(NODE), NOW_MS, command))  # type: ignore[arg-type]


def test_an_owner_announces_only_once_applied_up_to_the_tail_and_leads_when_it_reads_it() -> None:
    shell = Shell()
    shell.append(shell.ingress(AnnounceLeader(3, "other/1")))  # an older leader's term
    assert shell.leader.start() == [ReadTail()]
    assert shell.leader.on_tail(len(shell.log), NOW_MS) == []  # not caught up yet
    # Caught up: it announces the next epoch. (Applying the other node's announcement asked
    # for a claim too; it runs next, and finds the partition led by then.)
    announce, claim_again = shell.apply()
    assert isinstance(announce, Announce) and claim_again == ReadTail()
    assert decode_envelope(announce.record).command == AnnounceLeader(4, NODE)
    assert shell.leader.term is None  # not before its announcement is applied
    shell.append(announce.record)
    outputs = shell.apply()
    assert isinstance(outputs[0], Lead) and outputs[0].term.epoch == 4
    assert shell.leader.term is not None and shell.leader.term.epoch == 4
    assert shell.leader.on_tail(len(shell.log), NOW_MS) == []  # leading: no second announcement


def test_a_newer_announcement_deposes_the_leader_and_an_owner_claims_again() -> None:
    shell = Shell()
    shell.lead()
    term = shell.leader.term
    assert term is not None
    shell.append(shell.ingress(AnnounceLeader(term.epoch + 1, "other/1")))
    assert shell.apply() == [StepDown(), ReadTail()]
    # What the deposed term proposes from now on carries its old epoch: apply drops it.
    (stale,) = term.stamp([TruncateOutbox(1)], NOW_MS)
    assert decode_envelope(stale).dedup == LeaderDedup(term.epoch, 1)
    shell.append(stale)
    outcome = shell.processor.apply_batch([LogEntry(len(shell.log) - 1, stale)])
    assert outcome.stats.stale_epoch == 1 and outcome.stats.applied == 0


def test_only_a_timer_due_before_the_earliest_wakes_the_timer_driver() -> None:
    """A sleep due after the earliest held timer leaves the driver's wake-up as it is (issue
    10: no wake-up of the timer task per sleep); one due before it moves the wake-up."""
    shell = Shell()
    shell.lead()
    term = shell.leader.term
    assert term is not None

    def sleep(invocation_id: str, wake_up_ms: int) -> list[Output]:
        shell.append(shell.ingress(Invoke(invocation_id, GREETER, b'"x"')))
        shell.apply()
        effect = JournalAppend(1, Sleep(wake_up_ms=wake_up_ms))
        shell.append(*term.stamp([InvokerEffect(invocation_id, 1, effect)], NOW_MS))
        return shell.apply()

    assert WakeTimers() in sleep("inv-1", NOW_MS + 100)  # the first: the driver had none
    assert WakeTimers() not in sleep("inv-2", NOW_MS + 200)
    assert WakeTimers() not in sleep("inv-3", NOW_MS + 100)  # due with the head, sorted after
    assert shell.leader.next_wake_ms() == NOW_MS + 100
    assert WakeTimers() in sleep("inv-4", NOW_MS + 50)
    assert shell.leader.next_wake_ms() == NOW_MS + 50
    fire = shell.leader.tick(NOW_MS + 200)
    assert fire is not None and len(fire.timers) == 4  # every one still fires


def test_an_attempt_starts_and_its_timer_and_outbox_rows_are_fired_and_shipped() -> None:
    shell = Shell()
    shell.lead()
    term = shell.leader.term
    assert term is not None
    shell.append(shell.ingress(Invoke("inv-1", GREETER, b'"x"')))
    outputs = shell.apply()
    assert [type(o) for o in outputs] == [StartAttempt]
    # The attempt sleeps (a timer row) and sends (an outbox row), then suspends.
    effects: list[Effect] = [
        JournalAppend(1, Sleep(wake_up_ms=NOW_MS + 100)),
        JournalAppend(
            2, OneWayCall(CallTarget("Greeter", "greet"), b'"x"'), ResolvedTarget(GREETER)
        ),
        Suspended([1]),
    ]
    shell.append(*term.stamp([InvokerEffect("inv-1", 1, e) for e in effects], NOW_MS))
    outputs = shell.apply()
    assert WakeTimers() in outputs and WakeOutbox() in outputs
    shell.leader.attempt_ended("inv-1", 1)
    assert shell.leader.running() == {}

    assert shell.leader.tick(NOW_MS + 99) is None
    fire = shell.leader.tick(NOW_MS + 100)
    assert fire is not None
    assert [decode_envelope(r).command for r in fire.records] == [
        TimerFired(NOW_MS + 100, "sleep:inv-1:1")
    ]
    shell.leader.timers_failed(fire.timers)  # its ack was lost: it fires again
    again = shell.leader.tick(NOW_MS + 100)
    assert again is not None and again.timers == fire.timers

    shipment = shell.leader.ship(NOW_MS)
    assert shipment is not None and shipment.upto_seq == 1
    assert shell.leader.ship(NOW_MS) is None  # one shipment at a time
    shell.leader.ship_failed()
    retried = shell.leader.ship(NOW_MS)
    assert retried == shipment  # the same rows, the same producer seqs
    truncate = shell.leader.shipped(retried, NOW_MS)
    assert truncate is not None
    assert [decode_envelope(r).command for r in truncate.records] == [TruncateOutbox(1)]
    assert not shell.leader.has_unshipped()


def test_a_failed_claim_step_starts_the_claim_over_so_the_partition_does_not_stay_unled() -> None:
    shell = Shell()
    assert shell.leader.start() == [ReadTail()]
    (announce,) = shell.leader.on_tail(len(shell.log), NOW_MS)
    assert isinstance(announce, Announce)
    # The announcement was never appended (the driver's claim task failed at it). Without
    # ``claim_failed`` nothing more would happen: no batch comes to ask for another claim.
    assert shell.apply() == []
    assert shell.leader.claim_failed() == [ReadTail()]  # the restarted claim task runs it
    (again,) = shell.leader.on_tail(len(shell.log), NOW_MS)
    assert isinstance(again, Announce)
    shell.append(again.record)
    assert isinstance(shell.apply()[0], Lead)
    assert shell.leader.term is not None
    assert shell.leader.claim_failed() == []  # leading: nothing to claim

    # A partition this node does not own is not claimed after a failed step.
    follower = Shell()
    follower.leader = PartitionLeader(follower.processor, partitions=1, owned=False)
    assert follower.leader.start() == []
    assert follower.leader.claim_failed() == []


def test_a_handed_over_partition_is_led_until_the_next_announcement_and_not_claimed_back() -> None:
    shell = Shell()
    shell.lead()
    term = shell.leader.term
    assert term is not None
    assert shell.leader.hand_over() == []
    assert shell.leader.term == term and not shell.leader.owned  # still leading meanwhile
    shell.append(shell.ingress(Invoke("inv-1", GREETER, b'"x"')))
    assert [type(o) for o in shell.apply()] == [StartAttempt]  # and still running invocations
    shell.append(shell.ingress(AnnounceLeader(term.epoch + 1, "other/1")))
    assert shell.apply() == [StepDown()]  # deposed: it follows, with no claim back
    assert shell.leader.term is None


def test_claiming_a_handed_over_partition_it_still_leads_keeps_the_epoch() -> None:
    """A rebalance hands every partition over, the next placement claims them again: one this
    node still leads goes on at the same epoch (no announcement), its attempts untouched."""
    shell = Shell()
    shell.lead()
    term = shell.leader.term
    assert shell.leader.hand_over() == []
    assert shell.leader.claim() == []
    assert shell.leader.owned and shell.leader.term == term
    # Deposed later, it is an owner again: it claims back.
    assert term is not None
    shell.append(shell.ingress(AnnounceLeader(term.epoch + 1, "other/1")))
    assert shell.apply() == [StepDown(), ReadTail()]
