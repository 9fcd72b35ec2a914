"""A deterministic simulation of one node's partitions (DESIGN §9).

The real ``PartitionProcessor`` and state machine run over an in-memory log and an in-memory
store; a fake clock, a scripted SDK (handlers written as generators of journal commands) and a
shell that mirrors ``runtime/worker`` (leadership, invoker, outbox shipper, timers) drive them.
A seeded random scheduler interleaves every step and injects what production sees: crashes of the
whole node (all volatile state lost, the store and the log kept), records appended twice (a Kafka
producer retry), suspensions and retryable failures of attempts. The same seed replays the same
run, step for step.
"""

from __future__ import annotations

import collections
import functools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from partition_processor import keys
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
    Command,
    CompleteRun,
    Effect,
    End,
    Envelope,
    Failed,
    IngressSink,
    IngressSource,
    Invoke,
    InvokerEffect,
    JournalAppend,
    LeaderDedup,
    LeaderSource,
    PartitionSource,
    ProducerDedup,
    Suspended,
    Target,
    TimerFired,
    TruncateOutbox,
    encode_envelope,
)
from partition_processor.ids import (
    invocation_id_for,
    object_partition_key,
    parse_partition_key,
    partition_of,
    workflow_run_id,
)
from partition_processor.journal import (
    Completion,
    Failure,
    JournalCommand,
    JournalEntry,
    Result,
    Run,
    Success,
)
from partition_processor.processor import LogEntry, PartitionProcessor
from partition_processor.store_memory import MemoryStore
from partition_processor.tables import decode_status, read_journal, read_outbox, read_status
from partition_processor.values import InvocationStatus
from tests.simulation.handlers import (
    FAST_RETRY,
    RETAIN_MS,
    SCRIPTS,
    needs_completion,
    resolved_target,
)

PARTITIONS = 3

# ---------------------------------------------------------------- the scripted SDK


class ScriptedAttempt:
    """One attempt of an invocation, as the SDK would run it: replay the journal, then append."""

    def __init__(self, world: World, status: InvocationStatus, journal: list[JournalEntry]) -> None:
        self.world = world
        self.invocation_id = status.invocation_id
        self.number = status.attempt
        self.journal = journal
        self.completions = {i: e.completion for i, e in enumerate(journal) if e.completion}
        self.completion_seqs = {i: e.completion_seq for i, e in enumerate(journal) if e.completion}
        input_entry = journal[0].command
        # Cancellation, as the SDK delivers it: at the first await of something that was not
        # completed before the cancel (in the completion order), the same one on every replay.
        self.cancel_seq = status.cancel_seq
        self.cancel_delivered = False
        self.script = SCRIPTS[(status.target.service, status.target.handler)](
            input_entry.value,  # type: ignore[union-attr]
            world.now_ms,
        )
        self.pending: JournalCommand | None = next(self.script)
        self.index = 1
        self.waiting: int | None = None
        self.done = False

    def notify(self, index: int, completion: Completion, seq: int) -> None:
        if index not in self.completions:
            self.completions[index] = completion
            self.completion_seqs[index] = seq

    def notify_cancel(self, cancel_seq: int) -> None:
        self.cancel_seq = self.cancel_seq or cancel_seq

    def _cancels(self, index: int) -> bool:
        """Whether awaiting entry ``index`` now raises the cancellation."""
        if not self.cancel_seq or self.cancel_delivered:
            return False
        return not (index in self.completions and self.completion_seqs[index] < self.cancel_seq)

    @property
    def runnable(self) -> bool:
        if self.done:
            return False
        waiting = self.waiting
        return waiting is None or waiting in self.completions or self._cancels(waiting)

    def step(self) -> list[Effect]:
        """Run until the handler waits or ends; returns the effects to propose."""
        effects: list[Effect] = []
        while self.pending is not None:
            command, index = self.pending, self.index
            if self.waiting == index and index not in self.completions and not self._cancels(index):
                return effects
            self.waiting = None
            if index < len(self.journal):
                recorded = self.journal[index].command
                if type(recorded) is not type(command):
                    self.done = True
                    return [*effects, Failed(570, f"journal mismatch at {index}", True)]
            else:
                self.journal.append(JournalEntry(command))
                effects.append(JournalAppend(index, command, resolved_target(command)))
            if isinstance(command, Run) and index not in self.completions:
                # Journaled but without a result (or new): the closure runs (again).
                self.world.run_executions[(self.invocation_id, index)] += 1
                effects.append(CompleteRun(index, Success(b'"noted"')))
            completion: Completion | None = None
            if needs_completion(command):
                if self._cancels(index):
                    self.cancel_delivered = True
                    completion = Failure(409, "cancelled")
                elif index not in self.completions:
                    self.waiting = index
                    return effects
                else:
                    completion = self.completions[index]
            self.index += 1
            try:
                self.pending = self.script.send(completion)
            except StopIteration:
                self.pending = None
        self.done = True
        return [*effects, End()]


# ---------------------------------------------------------------- the nodes


@dataclass
class Leadership:
    """What a partition's leader holds in memory: lost when its node crashes or steps down."""

    epoch: int
    node: str
    seq: int = 0
    attempts: dict[str, ScriptedAttempt] = field(default_factory=dict)
    timers: set[tuple[int, str]] = field(default_factory=set)
    shipped_upto: int = 0
    truncate_pending: bool = False


@dataclass
class PartitionView:
    """One node's processor of one partition, and its leadership if it leads it."""

    index: int
    processor: PartitionProcessor
    cursor: int = 0  # the next LSN to apply
    announce_at: int | None = None  # announce leadership once applied up to here
    leader: Leadership | None = None


@dataclass
class SimNode:
    """A node: its store (RocksDB) survives crashes, its views and leaderships do not."""

    name: str
    store: MemoryStore = field(default_factory=MemoryStore)
    incarnation: int = 0
    views: list[PartitionView] = field(default_factory=list)

    @property
    def node_id(self) -> str:
        return f"{self.name}/{self.incarnation}"


class World:
    """Partitions' logs shared by ``nodes`` nodes (each applies every partition, as followers do;
    the leader of a partition also runs its invocations, outbox and timers)."""

    def __init__(
        self, seed: int, *, crashes: int, nodes: int = 1, duplicate_rate: float = 0.05
    ) -> None:
        self.seed = seed
        self.random = random.Random(seed)
        self.logs: list[list[bytes]] = [[] for _ in range(PARTITIONS)]
        self.nodes = [SimNode(chr(ord("a") + n)) for n in range(nodes)]
        self.now_ms = 1_000_000
        self.crashes_left = crashes
        self.handoffs_left = crashes if nodes > 1 else 0
        self.duplicate_rate = duplicate_rate
        self.run_executions: collections.Counter[tuple[str, int]] = collections.Counter()
        self.responses: dict[str, list[Result]] = {}
        self.trace: list[str] = []
        self.requests = 0
        for node in self.nodes:
            self._restart(node)

    @property
    def store(self) -> MemoryStore:
        """The first node's store (all converge: the checks compare them)."""
        return self.nodes[0].store

    # -- the log

    def append(self, partition: int, payloads: list[bytes]) -> None:
        log = self.logs[partition]
        for payload in payloads:
            log.append(payload)
            if self.random.random() < self.duplicate_rate:
                log.append(payload)  # a producer retry after a lost ack

    def propose(self, view: PartitionView, commands: list[Command]) -> None:
        leader = view.leader
        assert leader is not None
        source = LeaderSource(view.index, leader.epoch, leader.node)
        payloads = []
        for command in commands:
            leader.seq += 1
            dedup = LeaderDedup(leader.epoch, leader.seq)
            payloads.append(encode_envelope(Envelope(source, self.now_ms, command, dedup)))
        self.append(view.index, payloads)

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
        invoke = Invoke(
            invocation_id,
            target,
            argument,
            idempotency_key=idempotency_key,
            sink=IngressSink(node.node_id, f"request-{self.requests}"),
            retry_policy=FAST_RETRY,
            completion_retention_ms=RETAIN_MS,
            submission=target.handler_kind == "workflow",
        )
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

    # -- crashes, restarts and leadership changes

    def crash(self, node: SimNode) -> None:
        self.trace.append(f"crash {node.name}")
        self._restart(node)

    def _restart(self, node: SimNode) -> None:
        """A new incarnation: processors reopen the store, catch up to the tail they see now,
        then announce a new epoch (as ``PartitionWorker`` does)."""
        node.incarnation += 1
        node.views = []
        for p in range(PARTITIONS):
            processor = PartitionProcessor(node.store, p, node.node_id)
            view = PartitionView(p, processor, cursor=processor.fsm.applied_lsn + 1)
            node.views.append(view)
            self.claim(node, view)

    def claim(self, node: SimNode, view: PartitionView) -> None:
        """Take the partition over: announce once caught up with the log as it is now. The node
        that leads it meanwhile goes on as a zombie until it applies the announcement."""
        view.announce_at = len(self.logs[view.index])
        self._announce_if_caught_up(node, view)

    def _announce_if_caught_up(self, node: SimNode, view: PartitionView) -> None:
        if view.announce_at is None or view.cursor < view.announce_at:
            return
        view.announce_at = None
        epoch = view.processor.fsm.leader_epoch + 1
        source = LeaderSource(view.index, epoch, node.node_id)
        announce = Envelope(source, self.now_ms, AnnounceLeader(epoch, node.node_id))
        self.append(view.index, [encode_envelope(announce)])

    # -- steps

    def apply_some(self, node: SimNode, view: PartitionView) -> None:
        log = self.logs[view.index]
        upto = min(len(log), view.cursor + self.random.randint(1, 4))
        entries = [LogEntry(lsn, log[lsn]) for lsn in range(view.cursor, upto)]
        view.cursor = upto
        outcome = view.processor.apply_batch(entries)
        self._announce_if_caught_up(node, view)
        if outcome.is_leader and (view.leader is None or view.leader.epoch != outcome.leader_epoch):
            self._lead(node, view, outcome.leader_epoch)  # elected, or re-elected at a new epoch
        elif not outcome.is_leader:
            view.leader = None  # deposed: step down
        if view.leader is not None:
            for action in outcome.actions:
                self._execute(node, view, action)

    def _lead(self, node: SimNode, view: PartitionView, epoch: int) -> None:
        view.leader = Leadership(epoch, node.node_id)
        view.leader.timers.update(view.processor.pending_timers())
        for start in view.processor.invocations_to_resume():
            self._start(node, view, start)

    def _start(self, node: SimNode, view: PartitionView, action: StartInvocation) -> None:
        leader = view.leader
        assert leader is not None
        running = leader.attempts.get(action.invocation_id)
        if running is not None and running.number >= action.attempt and not running.done:
            return
        status = read_status(node.store, view.index, action.invocation_id)
        if status is None or status.phase != "invoked" or status.attempt != action.attempt:
            return
        journal = read_journal(node.store, view.index, action.invocation_id)
        leader.attempts[action.invocation_id] = ScriptedAttempt(self, status, journal)

    def _execute(self, node: SimNode, view: PartitionView, action: Action) -> None:
        leader = view.leader
        assert leader is not None
        match action:
            case StartInvocation():
                self._start(node, view, action)
            case NotifyInvoker(invocation_id=iid, attempt=number, index=index):
                attempt = leader.attempts.get(iid)
                if attempt is not None and attempt.number == number:
                    attempt.notify(index, action.completion, action.completion_seq)
            case CancelInvocation(invocation_id=iid, attempt=number, cancel_seq=cancel_seq):
                attempt = leader.attempts.get(iid)
                if attempt is not None and attempt.number == number:
                    attempt.notify_cancel(cancel_seq)
            case RespondToIngress(invocation_id=iid, result=result):
                self.responses.setdefault(iid, []).append(result)
            case RegisterTimer(wake_ms=wake_ms, timer_id=timer_id):
                leader.timers.add((wake_ms, timer_id))
            case AbortInvocation(invocation_id=iid):
                leader.attempts.pop(iid, None)
            case ShipOutbox() | NotifyInvocationId():
                pass  # the outbox is polled; the scripts need no callee ids

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
            self.propose(view, commands)

    def ship(self, node: SimNode, view: PartitionView) -> None:
        leader = view.leader
        assert leader is not None
        rows = [(s, m) for s, m in read_outbox(node.store, view.index) if s > leader.shipped_upto]
        producer = f"partition-{view.index}"
        for seq, message in rows:
            envelope = Envelope(
                PartitionSource(view.index),
                self.now_ms,
                message.command,
                ProducerDedup(producer, seq),
            )
            self.append(self.partition_of(message.route), [encode_envelope(envelope)])
        if rows:
            leader.shipped_upto = rows[-1][0]
            leader.truncate_pending = True

    def truncate(self, view: PartitionView) -> None:
        leader = view.leader
        assert leader is not None
        leader.truncate_pending = False
        self.propose(view, [TruncateOutbox(leader.shipped_upto)])

    def fire_timers(self, view: PartitionView) -> None:
        leader = view.leader
        assert leader is not None
        due = sorted(t for t in leader.timers if t[0] <= self.now_ms)
        leader.timers.difference_update(due)
        self.propose(view, [TimerFired(wake, timer_id) for wake, timer_id in due])

    # -- the scheduler

    def choices(self) -> list[Callable[[], None]]:
        enabled: list[Callable[[], None]] = []
        for node in self.nodes:
            for view in node.views:
                if view.cursor < len(self.logs[view.index]):
                    enabled.append(functools.partial(self.apply_some, node, view))
                leader = view.leader
                if leader is None:
                    continue
                for attempt in list(leader.attempts.values()):
                    if not attempt.done:
                        enabled.append(functools.partial(self.step_attempt, view, attempt))
                outbox = read_outbox(node.store, view.index)
                if any(s > leader.shipped_upto for s, _ in outbox):
                    enabled.append(functools.partial(self.ship, node, view))
                if leader.truncate_pending:
                    enabled.append(functools.partial(self.truncate, view))
                if any(wake <= self.now_ms for wake, _ in leader.timers):
                    enabled.append(functools.partial(self.fire_timers, view))
        return enabled

    def next_timer_ms(self) -> int | None:
        wakes = [
            wake
            for node in self.nodes
            for view in node.views
            if view.leader is not None
            for wake, timer_id in view.leader.timers
            if not timer_id.startswith("purge:")
        ]
        return min(wakes) if wakes else None

    def _fault(self) -> bool:
        """Now and then a node crashes, or takes a partition over from its leader."""
        if self.crashes_left and self.random.random() < 0.002:
            self.crashes_left -= 1
            self.crash(self.random.choice(self.nodes))
            return True
        if self.handoffs_left and self.random.random() < 0.002:
            self.handoffs_left -= 1
            node = self.random.choice(self.nodes)
            view = self.random.choice(node.views)
            self.trace.append(f"handoff p{view.index} to {node.name}")
            self.claim(node, view)
            return True
        return False

    def run(self, workload: list[Callable[[], bool]], max_steps: int = 200_000) -> None:
        """Interleave the workload's requests (an item returning False is not ready yet and is
        tried again later) with every enabled step until nothing is left to do."""
        pending = list(workload)
        for _ in range(max_steps):
            self.now_ms += self.random.randint(0, 3)
            if self._fault():
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
                return  # quiescent
            if wake is not None:
                self.now_ms = max(self.now_ms, wake)
        raise AssertionError(f"seed {self.seed}: no quiescence after {max_steps} steps")

    # -- what the checks read

    def replayed_store(self) -> MemoryStore:
        """A follower's store: every partition's whole log applied in random batch sizes."""
        store = MemoryStore()
        chooser = random.Random(self.seed + 1)
        for p, log in enumerate(self.logs):
            processor = PartitionProcessor(store, p, "follower")
            lsn = 0
            while lsn < len(log):
                upto = min(len(log), lsn + chooser.randint(1, 8))
                processor.apply_batch([LogEntry(i, log[i]) for i in range(lsn, upto)])
                lsn = upto
        return store

    def statuses(self) -> Iterator[InvocationStatus]:
        for p in range(PARTITIONS):
            for _, raw in self.store.scan(keys.partition_prefix(keys.Kind.STATUS, p)):
                yield decode_status(raw)

    def rows(self, kind: keys.Kind) -> int:
        return sum(
            1 for p in range(PARTITIONS) for _ in self.store.scan(keys.partition_prefix(kind, p))
        )

    def state(self, service: str, key: str, name: str) -> bytes | None:
        p = partition_of(object_partition_key(service, key), PARTITIONS)
        return self.store.get(keys.state_key(p, service, key, name))
