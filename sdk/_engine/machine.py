"""The replay engine of one invocation attempt, without I/O.

It knows the journal the runtime replayed, hands out journal indices to the handler's actions in
program order, checks each replayed action against what the journal recorded, collects completions
and callee ids the runtime notifies, and queues the messages to send. The transport feeds it
(``notify_*``) and drains it (``take_output``); the context calls ``sys_*``.
"""

from __future__ import annotations

from dataclasses import dataclass

from proto import endpoint_pb2 as pb
from sdk.errors import JournalMismatch, ReplayExhausted

JOURNAL_MISMATCH_CODE = 570


@dataclass(frozen=True, slots=True)
class Completed:
    """The completion of a journal entry and its place in the completion order."""

    completion: pb.Completion
    seq: int


def describe(command: pb.JournalCommand) -> str:
    """A short, human readable name of a command for error messages: ``run('charge')``."""
    kind = command.WhichOneof("kind") or "nothing"
    body = getattr(command, kind, None)
    match kind:
        case "get_state" | "set_state" | "clear_state":
            return f"{kind}({body.key!r})"  # type: ignore[union-attr]
        case "run" | "awakeable" | "get_promise" | "peek_promise" | "complete_promise" | "sleep":
            name = body.name  # type: ignore[union-attr]
            return f"{kind}({name!r})" if name else f"{kind}()"
        case "call" | "one_way_call":
            target = body.target  # type: ignore[union-attr]
            key = f"/{target.key}" if target.HasField("key") else ""
            return f"{kind}({target.service}{key}/{target.handler})"
        case "complete_awakeable":
            return f"{kind}({body.awakeable_id!r})"  # type: ignore[union-attr]
        case _:
            return kind


def _identity(command: pb.JournalCommand) -> tuple[object, ...]:
    """What must be equal between a replayed action and its journal entry.

    Time-dependent fields (a sleep's wake-up time, a send's delay) are left out: they are computed
    from the clock and legitimately differ between attempts; the journaled value wins.
    """
    kind = command.WhichOneof("kind")
    match kind:
        case "get_state" | "clear_state":
            return (kind, getattr(command, kind).key)
        case "set_state":
            return (kind, command.set_state.key, command.set_state.value)
        case "run" | "awakeable" | "get_promise" | "peek_promise" | "sleep":
            return (kind, getattr(command, kind).name)
        case "call" | "one_way_call":
            body = getattr(command, kind)
            target = body.target
            key = target.key if target.HasField("key") else None
            return (kind, target.service, target.handler, key, body.argument)
        case "complete_awakeable":
            return (kind, command.complete_awakeable.SerializeToString(deterministic=True))
        case "complete_promise":
            return (kind, command.complete_promise.SerializeToString(deterministic=True))
        case _:
            return (kind,)


class InvocationMachine:
    """State of one attempt: journal cursor, known completions, messages to send."""

    def __init__(self, start: pb.Start, journal: list[pb.JournalEntry]) -> None:
        if not journal or journal[0].command.WhichOneof("kind") != "input":
            raise ValueError("the replayed journal must start with the input entry")
        self.start = start
        self._journal = journal
        self._next_index = 1
        self._completions: dict[int, Completed] = {}
        self._callee_ids: dict[int, str] = {}
        self._output: list[pb.SdkMessage] = []
        self.cancel_seq = start.cancel_seq
        self.closed = False
        # The object's state as the runtime sent it with Start, kept current with this
        # handler's own set/clear actions: known values (None: known to be unset), and whether
        # every key is known. Reads it can answer are journaled with their answer, no round trip.
        self._eager = start.HasField("eager_state")
        self._state: dict[str, bytes | None] = {}
        self._state_complete = False
        if self._eager:
            self._state = {entry.key: entry.value for entry in start.eager_state.entries}
            self._state_complete = start.eager_state.complete
        for entry in journal:
            if entry.HasField("completion"):
                self._completions[entry.index] = Completed(entry.completion, entry.completion_seq)
            kind = entry.command.WhichOneof("kind")
            if kind in ("call", "one_way_call"):
                callee = getattr(entry.command, kind).invocation_id
                if callee:
                    self._callee_ids[entry.index] = callee

    # ------------------------------------------------------------------ reads

    @property
    def input(self) -> pb.InputCommand:
        return self._journal[0].command.input

    @property
    def replaying(self) -> bool:
        """True while the handler is re-executing actions the journal already holds."""
        return self._next_index < len(self._journal)

    def completion(self, index: int) -> Completed | None:
        return self._completions.get(index)

    def callee_id(self, index: int) -> str | None:
        return self._callee_ids.get(index)

    def recorded(self, index: int) -> pb.JournalCommand | None:
        """The journaled command at ``index``, if the journal holds it."""
        return self._journal[index].command if index < len(self._journal) else None

    def take_output(self) -> list[pb.SdkMessage]:
        output, self._output = self._output, []
        return output

    # ------------------------------------------------------------------ handler actions

    def sys_command(self, command: pb.JournalCommand) -> int:
        """Journal the next action; returns its index. Raises ``JournalMismatch`` on divergence."""
        index = self._next_index
        self._next_index += 1
        recorded = self.recorded(index)
        if recorded is not None:
            if _identity(recorded) != _identity(command):
                raise JournalMismatch(
                    index,
                    f"journal mismatch at entry {index}: the handler now does "
                    f"{describe(command)} but its journal recorded {describe(recorded)} "
                    "(handler code must be deterministic; wrap non-deterministic parts in ctx.run)",
                )
            self._track_state(command)
            return index
        if self.start.replay_only:
            raise ReplayExhausted()  # an upgrade check: nothing past the journal is done
        answer = self._eager_answer(command)
        if answer is not None:
            # Completed before anything else the runtime completes (seq 0), on replay too: the
            # runtime journals it with completion_seq 0.
            self._completions[index] = Completed(answer, 0)
            proposed = pb.ProposedCommand(index=index, command=command, completion=answer)
            self._emit(pb.SdkMessage(command=proposed))
            return index
        self._track_state(command)
        self._emit(pb.SdkMessage(command=pb.ProposedCommand(index=index, command=command)))
        return index

    def _track_state(self, command: pb.JournalCommand) -> None:
        """Apply the handler's own state writes to the eager state.

        The state sent with Start already includes the journaled writes; replaying them on top
        changes nothing (each write sets keys to fixed values, so doing it twice is the same).
        """
        if not self._eager:
            return
        match command.WhichOneof("kind"):
            case "set_state":
                self._state[command.set_state.key] = command.set_state.value
            case "clear_state":
                self._state[command.clear_state.key] = None
            case "clear_all_state":
                self._state = {}
                self._state_complete = True
            case _:
                pass

    def _eager_answer(self, command: pb.JournalCommand) -> pb.Completion | None:
        """The result of a state read known without asking the runtime, if it is."""
        if not self._eager:
            return None
        match command.WhichOneof("kind"):
            case "get_state":
                name = command.get_state.key
                if name in self._state:
                    value = self._state[name]
                    return (
                        pb.Completion(void=pb.Empty())
                        if value is None
                        else pb.Completion(value=value)
                    )
                if self._state_complete:
                    return pb.Completion(void=pb.Empty())
                return None
            case "get_state_keys":
                if not self._state_complete:
                    return None
                names = [name for name, value in self._state.items() if value is not None]
                # The store's order (names are length-prefixed), as a lazy read returns them.
                names.sort(key=lambda name: (len(name.encode()), name.encode()))
                return pb.Completion(state_keys=pb.StateKeys(keys=names))
            case _:
                return None

    def sys_run_completion(self, index: int, result: pb.ProposeRunCompletion) -> None:
        if index in self._completions:
            return  # already journaled by an earlier attempt
        result.index = index
        self._emit(pb.SdkMessage(run_completion=result))

    def sys_end(self) -> None:
        self._emit(pb.SdkMessage(end=pb.End()))
        self.closed = True

    def sys_error(self, code: int, message: str, related_entry: int | None = None) -> None:
        error = pb.Error(code=code, message=message, retryable=True)
        if related_entry is not None:
            error.related_entry = related_entry
        self._emit(pb.SdkMessage(error=error))
        self.closed = True

    def sys_suspend(self, awaiting: list[int]) -> None:
        self._emit(pb.SdkMessage(suspension=pb.Suspension(awaiting_entries=sorted(awaiting))))
        self.closed = True

    # ------------------------------------------------------------------ runtime messages

    def notify(self, notification: pb.Notification) -> None:
        if notification.invocation_id:
            self._callee_ids[notification.index] = notification.invocation_id
        if notification.HasField("completion") and notification.index not in self._completions:
            self._completions[notification.index] = Completed(
                notification.completion, notification.completion_seq
            )

    def notify_cancel(self, cancel_seq: int) -> None:
        if self.cancel_seq == 0:
            self.cancel_seq = cancel_seq

    def _emit(self, message: pb.SdkMessage) -> None:
        if not self.closed:
            self._output.append(message)
