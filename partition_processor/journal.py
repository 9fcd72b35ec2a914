"""Journal entries and results, as stored and as carried in log records.

These mirror the wire messages of ``proto/endpoint.proto``; the invoker converts between the two.
Every struct is tagged so that records written today stay readable when variants are added.
"""

from __future__ import annotations

import msgspec


class Success(msgspec.Struct, tag="ok", frozen=True):
    """A completed value (serialized by the SDK's serde)."""

    value: bytes


class Failure(msgspec.Struct, tag="fail", frozen=True):
    """A terminal failure with an HTTP-style code."""

    code: int
    message: str


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


JournalCommand = (
    Input | Output | GetState | SetState | ClearState | ClearAllState | GetStateKeys | Run
)


class JournalEntry(msgspec.Struct, frozen=True):
    """One journal entry: the command and, once known, its completion."""

    command: JournalCommand
    completion: Completion | None = None


def command_name(command: JournalCommand) -> str:
    """A short human description of a command, for status pages and error messages."""
    match command:
        case Run(name=name):
            return f"run({name!r})"
        case GetState(key=key) | SetState(key=key) | ClearState(key=key):
            return f"{command.__struct_config__.tag}({key!r})"
        case _:
            return str(command.__struct_config__.tag)
