"""The scripted SDK of the simulation: one attempt of an invocation, as the SDK would run it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from partition_processor.actions import CancelInvocation, NotifyInvocationId, NotifyInvoker
from partition_processor.commands import CompleteRun, Effect, End, Failed, JournalAppend
from partition_processor.journal import (
    Completion,
    Failure,
    JournalCommand,
    JournalEntry,
    Run,
    Success,
)
from partition_processor.values import InvocationStatus
from runtime.worker.proposer import Term
from tests.simulation.handlers import SCRIPTS, needs_completion, resolved_target

if TYPE_CHECKING:
    from tests.simulation.world import World


class ScriptedAttempt:
    """One attempt of an invocation, as the SDK would run it: replay the journal, then append."""

    def __init__(
        self, world: World, status: InvocationStatus, journal: list[JournalEntry], term: Term
    ) -> None:
        self.world = world
        self.term = term  # its proposals carry this term's epoch, as the invoker's do
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

    def deliver(self, action: NotifyInvoker | NotifyInvocationId | CancelInvocation) -> None:
        match action:
            case NotifyInvoker():
                self.notify(action.index, action.completion, action.completion_seq)
            case CancelInvocation():
                self.notify_cancel(action.cancel_seq)
            case NotifyInvocationId():
                pass  # the scripts need no callee ids

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
                # Its result differs per execution (the world's RNG, drawn now), so a zombie's
                # copy differs from the new leader's and the checks see which one the log kept.
                self.world.run_executions[(self.invocation_id, index)] += 1
                drawn = str(self.world.random.getrandbits(32)).encode()
                effects.append(CompleteRun(index, Success(drawn)))
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
