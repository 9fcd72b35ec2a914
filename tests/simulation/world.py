"""A deterministic simulation of a cluster's partitions (DESIGN §9).

The real ``PartitionProcessor`` and state machine, and the real sans-I/O leader shell
(``runtime.worker.leader.PartitionLeader``: claims and announcements, terms and their fencing,
which attempts run, timers, outbox shipping and truncation), run over an in-memory log and
in-memory stores. This module only plays their surroundings: the fake log (appends, duplicated
now and then as a Kafka producer retry would), the fake clock, a scripted SDK (handlers written
as generators of journal commands), the ownership changes of a cluster, and node crashes (all
volatile state lost, the store and the log kept). A seeded random scheduler interleaves every
step; the same seed replays the same run, step for step.

While appending, the world also keeps an oracle of what apply must do with each record (which
leader records are stale, which outbox messages are repeats, which ``ctx.run`` result the
journal must keep): the checks compare it with what the processor reports.
"""

from __future__ import annotations

import collections
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from partition_processor.commands import (
    Attach,
    Command,
    Effect,
    Envelope,
    Failed,
    IngressSink,
    IngressSource,
    Invoke,
    InvokerEffect,
    Suspended,
    Target,
    encode_envelope,
)
from partition_processor.ids import (
    invocation_id_for,
    parse_partition_key,
    partition_of,
    workflow_run_id,
)
from partition_processor.journal import (
    Result,
)
from partition_processor.processor import ApplyStats, LogEntry, PartitionProcessor
from partition_processor.store_memory import MemoryStore
from partition_processor.tables import read_journal, read_status
from partition_processor.values import InvocationStatus
from runtime.worker.leader import (
    AbortAttempt,
    Announce,
    Deliver,
    FireTimers,
    Lead,
    Output,
    PartitionLeader,
    Propose,
    ReadTail,
    Respond,
    StartAttempt,
    StepDown,
    WakeOutbox,
    WakeTimers,
)
from runtime.worker.proposer import Term
from tests.simulation.handlers import (
    FAST_RETRY,
    RETAIN_MS,
)
from tests.simulation.oracle import PARTITIONS, Oracle
from tests.simulation.scripted import ScriptedAttempt
from tests.simulation.world_reads import WorldReads

TIMER_CAPACITY = 2  # tiny, so the leader's timer windows are loaded again and again
FAULT_RATE = 0.02  # per step, while planned crashes and handoffs remain
# Lost acks: the records were appended, but the shell hears of a failure and tries again. The
# first shipment and the first timer firing of every run lose theirs, later ones now and then.
LOST_SHIP_ACK_RATE = 0.1  # the outbox rows are shipped again
LOST_TIMER_ACK_RATE = 0.05  # the timers fire again

# ---------------------------------------------------------------- the nodes


@dataclass
class PartitionView:
    """One node's processor and leader shell of one partition, and the attempts it runs."""

    index: int
    processor: PartitionProcessor
    leader: PartitionLeader
    cursor: int = 0  # the next LSN to apply
    attempts: dict[str, ScriptedAttempt] = field(default_factory=dict)
    truncates: list[list[bytes]] = field(default_factory=list)  # in flight, lost on a crash


@dataclass
class SimNode:
    """A node: its store (RocksDB) survives crashes, its views and leaderships do not."""

    name: str
    store: MemoryStore = field(default_factory=MemoryStore)
    incarnation: int = 0
    views: list[PartitionView] = field(default_factory=list)
    stats: ApplyStats = field(default_factory=ApplyStats)  # over all incarnations

    @property
    def node_id(self) -> str:
        return f"{self.name}/{self.incarnation}"


@dataclass
class Caller:
    """An ingress request waiting for its invocation's answer."""

    invocation_id: str
    sink: IngressSink
    announcements_at_submission: int  # leadership changes after it may need a re-attach
    heard: list[Result] = field(default_factory=list)


class World(WorldReads[SimNode]):
    """Partitions' logs shared by ``nodes`` nodes. Each node applies every partition, as a
    follower does; the owner of a partition claims it, and its leader shell runs its
    invocations, outbox and timers."""

    def __init__(
        self,
        seed: int,
        *,
        crashes: int,
        nodes: int = 1,
        handoffs: int = 0,
        duplicate_rate: float = 0.05,
    ) -> None:
        self.seed = seed
        self.random = random.Random(seed)
        self.logs: list[list[bytes]] = [[] for _ in range(PARTITIONS)]
        self.nodes = [SimNode(chr(ord("a") + n)) for n in range(nodes)]
        self.owners = [self.nodes[p % nodes] for p in range(PARTITIONS)]
        self.now_ms = 1_000_000
        self.duplicate_rate = duplicate_rate
        self.oracle = Oracle()
        self.run_executions: collections.Counter[tuple[str, int]] = collections.Counter()
        self.callers: list[Caller] = []
        self.patch_callers: list[Caller] = []  # state patches' requests (by their sink)
        self.trace: list[str] = []
        self.requests = 0
        self.announcements = [0] * PARTITIONS
        # Faults: planned up front, each fired at a random step (and all of them before the run
        # may end), so a run's checks can demand that every one of them happened.
        self.faults: list[str] = ["crash"] * crashes + ["handoff"] * handoffs
        self.faults_done: collections.Counter[str] = collections.Counter()
        self.releases: list[tuple[SimNode, int]] = []  # revocations on their way to old owners
        for node in self.nodes:
            self._restart(node)

    # -- the log

    def append(self, partition: int, payloads: list[bytes]) -> None:
        log = self.logs[partition]
        for payload in payloads:
            copies = 2 if self.random.random() < self.duplicate_rate else 1
            self.faults_done["duplicate"] += copies - 1  # a producer retry after a lost ack
            for _ in range(copies):
                log.append(payload)
                self.oracle.see(partition, payload)

    def append_again(self, partition: int, payload: bytes) -> None:
        """A record appended once more, long after it was first: an ingress that appends its
        request again after a timeout, or a producer retry that lands late (DESIGN §10)."""
        self.faults_done["late_copy"] += 1
        self.logs[partition].append(payload)
        self.oracle.see(partition, payload)

    def submit(self, target: Target, argument: bytes, idempotency_key: str | None = None) -> str:
        """What the ingress appends for a request (a workflow run has its key's fixed id, an
        idempotent request the id of its target and key)."""
        if target.handler_kind == "workflow" and target.key is not None:
            invocation_id = workflow_run_id(target.service, target.key)
        else:
            invocation_id = invocation_id_for(
                target.service,
                target.handler,
                target.key,
                idempotency_key,
                entropy=self.random.randbytes(16),
            )
        self.requests += 1
        node = self.random.choice(self.nodes)
        sink = IngressSink(node.node_id, f"request-{self.requests}")
        invoke = Invoke(
            invocation_id,
            target,
            argument,
            idempotency_key=idempotency_key,
            sink=sink,
            retry_policy=FAST_RETRY,
            completion_retention_ms=RETAIN_MS,
            submission=target.handler_kind == "workflow",
        )
        partition = self.partition_of(invocation_id)
        self.callers.append(Caller(invocation_id, sink, self.announcements[partition]))
        self.ingress(invocation_id, invoke)
        return invocation_id

    def ingress(self, route: str, command: Command) -> None:
        source = IngressSource(self.random.choice(self.nodes).node_id)
        envelope = Envelope(source, self.now_ms, command)
        self.append(self.partition_of(route), [encode_envelope(envelope)])

    @staticmethod
    def partition_of(invocation_id: str) -> int:
        return partition_of(parse_partition_key(invocation_id), PARTITIONS)

    def status(self, invocation_id: str) -> InvocationStatus | None:
        return read_status(self.store, self.partition_of(invocation_id), invocation_id)

    # -- crashes, restarts and ownership changes

    def crash(self, node: SimNode) -> None:
        self.trace.append(f"crash {node.name}")
        self._restart(node)

    def _restart(self, node: SimNode) -> None:
        """A new incarnation: processors reopen the store; each partition the node owns is
        claimed again (catch up to the tail seen now, then announce a new epoch)."""
        node.incarnation += 1
        node.views = []
        for p in range(PARTITIONS):
            processor = PartitionProcessor(node.store, p, node.node_id)
            leader = PartitionLeader(
                processor,
                partitions=PARTITIONS,
                owned=self.owners[p] is node,
                timer_capacity=TIMER_CAPACITY,
            )
            view = PartitionView(p, processor, leader, cursor=processor.fsm.applied_lsn + 1)
            node.views.append(view)
            self._carry_out(node, view, leader.start())

    def handoff(self) -> None:
        """The group moves a partition to another node. The new owner claims it at once; the
        revocation reaches the old owner later, and until then it leads on as a zombie (and,
        still owning the partition, may even claim it back)."""
        p = self.random.choice(self._busy_partitions() or range(PARTITIONS))
        old = self.owners[p]
        new = self.random.choice([n for n in self.nodes if n is not old])
        self.trace.append(f"handoff p{p} {old.name}->{new.name}")
        self.owners[p] = new
        if old is not new:
            self.releases.append((old, p))
        new_view = new.views[p]
        self._carry_out(new, new_view, new_view.leader.claim())
        while new_view.cursor < len(self.logs[p]) and new_view.leader.owned:
            self.apply_some(new, new_view)  # a caught-up follower: it announces right away

    def _busy_partitions(self) -> list[int]:
        """The partitions whose owner leads them with attempts running."""
        return [p for p in range(PARTITIONS) if self.owners[p].views[p].attempts]

    def release(self, node: SimNode, partition: int) -> None:
        view = node.views[partition]
        self._carry_out(node, view, view.leader.release())

    # -- the leader shell's commands, carried out as ``runtime.worker.partition`` does

    def _carry_out(self, node: SimNode, view: PartitionView, outputs: list[Output]) -> None:
        for output in outputs:
            match output:
                case ReadTail():
                    tail = len(self.logs[view.index])
                    self._carry_out(node, view, view.leader.on_tail(tail, self.now_ms))
                case Announce(record=record):
                    self.announcements[view.index] += 1
                    self.append(view.index, [record])
                    self._zombies_act(node, view.index)
                case Lead() | StepDown():
                    view.attempts = {}  # a new invoker; stepping down stops every attempt
                    view.truncates = []
                case StartAttempt(action=action, term=term):
                    self._start(node, view, action.invocation_id, action.attempt, term)
                case Deliver(action=action):
                    attempt = view.attempts.get(action.invocation_id)
                    assert attempt is not None and attempt.number == action.attempt, action
                    attempt.deliver(action)
                case AbortAttempt(invocation_id=invocation_id):
                    view.attempts.pop(invocation_id, None)
                case Respond(action=action):
                    for caller in [*self.callers, *self.patch_callers]:
                        if caller.sink == action.sink and self.alive(caller.sink.node):
                            caller.heard.append(action.result)
                case Propose(records=records) | FireTimers(records=records):
                    self.append(view.index, records)
                case WakeTimers() | WakeOutbox():
                    pass  # the scheduler asks the shell for due timers and unshipped rows

    def _zombies_act(self, announcer: SimNode, partition: int) -> None:
        """Right after an announcement is appended, each other leader of the partition (a
        zombie from now on) takes a step before it reads it: what it proposes must be fenced."""
        for node in self.nodes:
            if len(node.views) <= partition:
                continue  # (still starting)
            view = node.views[partition]
            if node is announcer or view.leader.term is None:
                continue
            attempts = [a for a in view.attempts.values() if not a.done]
            runnable = [a for a in attempts if a.runnable]
            if runnable:
                self.step_attempt(view, self.random.choice(runnable))
            elif attempts:  # its inactivity timeout: the attempt suspends
                attempt = self.random.choice(attempts)
                assert attempt.waiting is not None
                attempt.done = True
                self._effects(view, attempt, [Suspended([attempt.waiting])])

    def alive(self, node_id: str) -> bool:
        return any(node.node_id == node_id for node in self.nodes)

    def _start(
        self, node: SimNode, view: PartitionView, invocation_id: str, number: int, term: Term
    ) -> None:
        """What ``Attempt.run`` does first: an attempt superseded before it started ends."""
        status = read_status(node.store, view.index, invocation_id)
        if status is None or status.phase != "invoked" or status.attempt != number:
            view.attempts.pop(invocation_id, None)
            view.leader.attempt_ended(invocation_id, number)
            return
        journal = read_journal(node.store, view.index, invocation_id)
        view.attempts[invocation_id] = ScriptedAttempt(self, status, journal, term)

    # -- steps

    def apply_some(self, node: SimNode, view: PartitionView) -> None:
        log = self.logs[view.index]
        upto = min(len(log), view.cursor + self.random.randint(1, 4))
        entries = [LogEntry(lsn, log[lsn]) for lsn in range(view.cursor, upto)]
        view.cursor = upto
        outcome = view.processor.apply_batch(entries)
        node.stats += outcome.stats
        self._carry_out(node, view, view.leader.on_batch(outcome, self.now_ms))

    def step_attempt(self, view: PartitionView, attempt: ScriptedAttempt) -> None:
        roll = self.random.random()
        if attempt.waiting is not None and not attempt.runnable:
            if roll < 0.5:  # the inactivity timeout: suspend and close the stream
                attempt.done = True
                self._effects(view, attempt, [Suspended([attempt.waiting])])
            return
        if roll < 0.03:
            attempt.done = True
            self._effects(view, attempt, [Failed(500, "flaky", True)])
            return
        self._effects(view, attempt, attempt.step())

    def _effects(
        self, view: PartitionView, attempt: ScriptedAttempt, effects: list[Effect]
    ) -> None:
        if effects:
            commands: list[Command] = [
                InvokerEffect(attempt.invocation_id, attempt.number, e) for e in effects
            ]
            self.append(view.index, attempt.term.stamp(commands, self.now_ms))
        if attempt.done:
            if view.attempts.get(attempt.invocation_id) is attempt:
                del view.attempts[attempt.invocation_id]
            view.leader.attempt_ended(attempt.invocation_id, attempt.number)

    def ship(self, view: PartitionView) -> None:
        shipment = view.leader.ship(self.now_ms)
        assert shipment is not None
        for target, records in shipment.by_target.items():
            self.append(target, records)
        if not self.faults_done["lost_ship_ack"] or self.random.random() < LOST_SHIP_ACK_RATE:
            self.faults_done["lost_ship_ack"] += 1
            view.leader.ship_failed()  # delivered, but the acks were lost: shipped again
            return
        truncate = view.leader.shipped(shipment, self.now_ms)
        if truncate is not None:
            view.truncates.append(truncate.records)

    def truncate(self, view: PartitionView) -> None:
        self.append(view.index, view.truncates.pop(0))

    def fire_timers(self, view: PartitionView) -> None:
        fire = view.leader.tick(self.now_ms)
        assert fire is not None
        if not self.faults_done["lost_timer_ack"] or self.random.random() < LOST_TIMER_ACK_RATE:
            self.faults_done["lost_timer_ack"] += 1
            view.leader.timers_failed(fire.timers)  # appended, ack lost: they fire again
        self.append(view.index, fire.records)

    # -- the scheduler

    def choices(self) -> list[Callable[[], None]]:
        enabled: list[Callable[[], None]] = []
        for node in self.nodes:
            for view in node.views:
                if view.cursor < len(self.logs[view.index]):
                    enabled.append(functools.partial(self.apply_some, node, view))
                if view.leader.term is None:
                    continue
                for attempt in list(view.attempts.values()):
                    if not attempt.done:
                        enabled.append(functools.partial(self.step_attempt, view, attempt))
                if view.leader.has_unshipped():
                    enabled.append(functools.partial(self.ship, view))
                if view.truncates:
                    enabled.append(functools.partial(self.truncate, view))
                wake = view.leader.next_wake_ms()
                if wake is not None and wake <= self.now_ms:
                    enabled.append(functools.partial(self.fire_timers, view))
        for node, p in self.releases:
            enabled.append(functools.partial(self._deliver_release, node, p))
        return enabled

    def _deliver_release(self, node: SimNode, partition: int) -> None:
        self.releases.remove((node, partition))
        if self.owners[partition] is not node:  # (it may have been handed back meanwhile)
            self.release(node, partition)

    def next_timer_ms(self) -> int | None:
        """The earliest timer the leaders hold, but retention purges (the checks read results)."""
        wakes = []
        for node in self.nodes:
            for view in node.views:
                timers = view.leader.timers
                timer = timers.next_timer() if timers is not None else None
                if timer is not None and not timer[1].startswith("purge:"):
                    wakes.append(timer[0])
        return min(wakes) if wakes else None

    def _fault(self, due: bool) -> bool:
        """Now and then (or now, when ``due``) one of the planned faults happens."""
        if not self.faults or not (due or self.random.random() < FAULT_RATE):
            return False
        kind = self.faults[self.random.randrange(len(self.faults))]
        if kind == "handoff" and not due and not self._busy_partitions():
            return False  # a handoff waits for a leader with attempts running: a zombie acts
        self.faults.remove(kind)
        self.faults_done[kind] += 1
        if kind == "crash":
            self.crash(self.random.choice(self.nodes))
        else:
            self.handoff()
        return True

    def run(self, workload: list[Callable[[], bool]], max_steps: int = 200_000) -> None:
        """Interleave the workload's requests (an item returning False is not ready yet and is
        tried again later) with every enabled step until nothing is left to do."""
        pending = list(workload)
        for _ in range(max_steps):
            self.now_ms += self.random.randint(0, 3)
            if self._fault(due=False):
                continue
            enabled = self.choices()
            if pending and (not enabled or self.random.random() < 0.2):
                item = pending.pop(0)
                if not item():
                    pending.append(item)
                continue
            if enabled:
                self.random.choice(enabled)()
                continue
            wake = self.next_timer_ms()
            if wake is None and not pending:
                if self._fault(due=True):
                    continue  # the faults not yet fired happen before the run may end
                return  # quiescent
            if wake is not None:
                self.now_ms = max(self.now_ms, wake)
        raise AssertionError(f"seed {self.seed}: no quiescence after {max_steps} steps")

    def reattach(self) -> list[Caller]:
        """The liveness phase, once faults healed: a caller still waiting whose partition
        changed leaders re-attaches by invocation id (as the ingress does on a leadership
        change), then the world runs to quiescence again. Returns the callers that did."""
        waiting = [
            c
            for c in self.callers
            if self.alive(c.sink.node)
            and not c.heard
            and self.announcements[self.partition_of(c.invocation_id)]
            > c.announcements_at_submission
        ]
        for caller in waiting:
            self.ingress(caller.invocation_id, Attach(caller.invocation_id, caller.sink))
        self.run([])
        return waiting
