"""Journal entries and results, as stored and as carried in log records.

These mirror the wire messages of ``proto/endpoint.proto``; the invoker converts between the two.
Every struct is tagged so that records written today stay readable when variants are added.
"""

from __future__ import annotations

import msgspec


class Success(msgspec.Struct, tag="ok", frozen=True):
    """A completed value (serialized by the SDK's serde)."""

    value: bytes


class Failure(msgspec.Struct, tag="fail", frozen=True, omit_defaults=True):
    """A terminal failure with an HTTP-style code, and the ``TerminalError``'s metadata if any.

    ``metadata`` defaults to empty so failures logged before it existed still decode.
    """

    code: int
    message: str
    metadata: dict[str, str] = {}


class Void(msgspec.Struct, tag="void", frozen=True):
    """Completed with no value (e.g. a state key that is not set)."""


class StateKeys(msgspec.Struct, tag="keys", frozen=True):
    """The result of ``state_keys()``."""

    keys: list[str]


Result = Success | Failure
Completion = Success | Failure | Void | StateKeys


class Input(msgspec.Struct, tag="input", frozen=True):
    """Entry 0 of every journal: the request body and headers."""

    value: bytes
    headers: list[tuple[str, str]] = []


class Output(msgspec.Struct, tag="output", frozen=True):
    """The handler's result; the last entry of a finished journal."""

    result: Result


class GetState(msgspec.Struct, tag="get_state", frozen=True):
    key: str


class SetState(msgspec.Struct, tag="set_state", frozen=True):
    key: str
    value: bytes


class ClearState(msgspec.Struct, tag="clear_state", frozen=True):
    key: str


class ClearAllState(msgspec.Struct, tag="clear_all_state", frozen=True):
    pass


class GetStateKeys(msgspec.Struct, tag="get_state_keys", frozen=True):
    pass


class Run(msgspec.Struct, tag="run", frozen=True):
    """A ``ctx.run`` step; its completion is proposed by the SDK after running the closure."""

    name: str


class CallTarget(msgspec.Struct, frozen=True):
    """A handler as the SDK names it; the runtime resolves its type and kind."""

    service: str
    handler: str
    key: str | None = None


class Call(msgspec.Struct, tag="call", frozen=True):
    """A request-response call; completed with the callee's result.

    ``invocation_id`` is empty when proposed and filled in by the state machine.
    """

    target: CallTarget
    argument: bytes
    headers: list[tuple[str, str]] = []
    idempotency_key: str | None = None
    invocation_id: str = ""


class OneWayCall(msgspec.Struct, tag="one_way_call", frozen=True):
    """A send: the callee starts at ``invoke_at_ms`` (0 = now); nothing comes back."""

    target: CallTarget
    argument: bytes
    headers: list[tuple[str, str]] = []
    idempotency_key: str | None = None
    invoke_at_ms: int = 0
    invocation_id: str = ""


class Sleep(msgspec.Struct, tag="sleep", frozen=True):
    """A durable timer; completed with ``Void`` at ``wake_up_ms``."""

    wake_up_ms: int
    name: str = ""


class Awakeable(msgspec.Struct, tag="awakeable", frozen=True):
    """Completed from outside the invocation, through its awakeable id."""

    name: str = ""


class CompleteAwakeable(msgspec.Struct, tag="complete_awakeable", frozen=True):
    """Resolve or reject another invocation's awakeable."""

    awakeable_id: str
    result: Result


class GetPromise(msgspec.Struct, tag="get_promise", frozen=True):
    """Await a workflow's durable promise; completed when it is resolved or rejected."""

    name: str


class PeekPromise(msgspec.Struct, tag="peek_promise", frozen=True):
    """The promise's result if it has one, else ``Void``; never waits."""

    name: str


class CompletePromise(msgspec.Struct, tag="complete_promise", frozen=True):
    """Resolve or reject a promise; completed with ``Void``, or Failure 409 if already done."""

    name: str
    result: Result


class CancelInvocation(msgspec.Struct, tag="cancel_invocation", frozen=True):
    """Cooperatively cancel another invocation (``ctx.cancel_invocation`` / a handle's cancel)."""

    invocation_id: str


JournalCommand = (
    Input
    | Output
    | GetState
    | SetState
    | ClearState
    | ClearAllState
    | GetStateKeys
    | Run
    | Call
    | OneWayCall
    | Sleep
    | Awakeable
    | CompleteAwakeable
    | GetPromise
    | PeekPromise
    | CompletePromise
    | CancelInvocation
)


class JournalEntry(msgspec.Struct, frozen=True):
    """One journal entry: the command and, once known, its completion.

    ``completion_seq`` numbers completions in the order they were applied (1, 2, ...), so that a
    replayed ``select`` picks the same winner as the original execution did.
    """

    command: JournalCommand
    completion: Completion | None = None
    completion_seq: int = 0


def command_name(command: JournalCommand) -> str:
    """A short human description of a command, for status pages and error messages."""
    match command:
        case Run(name=name):
            return f"run({name!r})"
        case GetPromise(name=key) | PeekPromise(name=key) | CompletePromise(name=key):
            return f"{command.__struct_config__.tag}({key!r})"
        case GetState(key=key) | SetState(key=key) | ClearState(key=key):
            return f"{command.__struct_config__.tag}({key!r})"
        case Call(target=target) | OneWayCall(target=target):
            where = f"{target.service}/{target.key}" if target.key else target.service
            return f"{command.__struct_config__.tag}({where}/{target.handler})"
        case _:
            return str(command.__struct_config__.tag)
