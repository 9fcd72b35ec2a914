"""Checks on what an SDK endpoint proposes, before it is logged (DESIGN §11, validate at edges).

A command that would break a store key (a key longer than its length prefix), overflow a number
or exceed the size policy fails the invocation terminally with a clear message: retrying would
only produce the same command again.
"""

from __future__ import annotations

from typing import assert_never

from partition_processor import codes
from partition_processor.ids import InvalidAwakeableId, is_invocation_id, parse_awakeable_id
from partition_processor.journal import (
    Awakeable,
    Call,
    CancelInvocation,
    ClearAllState,
    ClearState,
    CompleteAwakeable,
    CompletePromise,
    Completion,
    GetPromise,
    GetState,
    GetStateKeys,
    Input,
    JournalCommand,
    OneWayCall,
    Output,
    PeekPromise,
    Result,
    Run,
    SetState,
    Sleep,
    StateKeys,
    Success,
)
from partition_processor.limits import MAX_JOURNAL_INDEX, MAX_TIMESTAMP_MS
from runtime.limits import SizePolicy

# An error message from the endpoint is stored with the failure: keep it readable and small.
MAX_ERROR_MESSAGE_CHARS = 4096


class InvalidCommand(Exception):
    """The endpoint proposed something that can never be applied; ``code`` fails the
    invocation."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_index(index: int, what: str = "journal index") -> None:
    if not 0 <= index <= MAX_JOURNAL_INDEX:
        raise InvalidCommand(codes.INVALID_COMMAND, f"{what} {index} is out of range")


def check_key(value: str, what: str, limits: SizePolicy) -> None:
    size = len(value.encode(errors="surrogatepass"))
    if size > limits.key_bytes:
        raise InvalidCommand(
            codes.INVALID_COMMAND, f"{what} of {size} bytes exceeds the limit of {limits.key_bytes}"
        )
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise InvalidCommand(codes.INVALID_COMMAND, f"{what} is not valid UTF-8") from exc


def check_value(value: bytes, what: str, limits: SizePolicy) -> None:
    if len(value) > limits.entry_bytes:
        raise InvalidCommand(
            codes.TOO_LARGE,
            f"{what} of {len(value)} bytes exceeds the entry limit of {limits.entry_bytes} bytes",
        )


def check_result(result: Result, what: str, limits: SizePolicy) -> None:
    if isinstance(result, Success):
        check_value(result.value, what, limits)
    elif len(result.message) > limits.entry_bytes:
        raise InvalidCommand(codes.TOO_LARGE, f"the failure message of {what} is too large")


def check_eager_read(completion: Completion, limits: SizePolicy) -> None:
    """A state read the SDK answered itself is journaled as given: bound it like a value."""
    if isinstance(completion, Success):
        check_value(completion.value, "a state value", limits)
    elif isinstance(completion, StateKeys):
        for name in completion.keys:
            check_key(name, "a state key", limits)


def _check_time(value_ms: int, what: str) -> None:
    if not 0 <= value_ms <= MAX_TIMESTAMP_MS:
        raise InvalidCommand(codes.INVALID_COMMAND, f"{what} {value_ms} is out of range")


def _check_call(command: Call | OneWayCall, limits: SizePolicy) -> None:
    target = command.target
    check_key(target.service, "the callee's service name", limits)
    check_key(target.handler, "the callee's handler name", limits)
    if target.key is not None:
        check_key(target.key, "the callee's key", limits)
    if command.idempotency_key is not None:
        check_key(command.idempotency_key, "the idempotency key", limits)
    check_value(command.argument, "the call argument", limits)
    headers = sum(
        len(k.encode(errors="replace")) + len(v.encode(errors="replace"))
        for k, v in command.headers
    )
    if headers > limits.headers_bytes:
        raise InvalidCommand(
            codes.TOO_LARGE, f"call headers of {headers} bytes exceed {limits.headers_bytes}"
        )
    for name, value in command.headers:
        check_key(name, "a call header name", limits)
        check_key(value, "a call header value", limits)
    if isinstance(command, OneWayCall):
        _check_time(command.invoke_at_ms, "the send's invoke_at_ms")


def check_command(command: JournalCommand, limits: SizePolicy) -> None:
    """Raise ``InvalidCommand`` if ``command`` could not be stored and applied."""
    match command:
        case GetState(key=key) | ClearState(key=key):
            check_key(key, "the state key", limits)
        case SetState(key=key, value=value):
            check_key(key, "the state key", limits)
            check_value(value, f"the value of state {key[:100]!r}", limits)
        case Run(name=name) | Awakeable(name=name):
            check_key(name, "the name", limits)
        case Sleep(wake_up_ms=wake_up_ms, name=name):
            check_key(name, "the sleep's name", limits)
            _check_time(wake_up_ms, "the sleep's wake_up_ms")
        case GetPromise(name=name) | PeekPromise(name=name):
            check_key(name, "the promise name", limits)
        case CompletePromise(name=name, result=result):
            check_key(name, "the promise name", limits)
            check_result(result, f"promise {name[:100]!r}", limits)
        case CompleteAwakeable(awakeable_id=awakeable_id, result=result):
            try:
                parse_awakeable_id(awakeable_id)
            except InvalidAwakeableId as exc:
                raise InvalidCommand(codes.INVALID_COMMAND, str(exc)) from exc
            check_result(result, "the awakeable's result", limits)
        case CancelInvocation(invocation_id=invocation_id):
            if not is_invocation_id(invocation_id):
                shown = invocation_id[:100]
                raise InvalidCommand(codes.INVALID_COMMAND, f"not an invocation id: {shown!r}")
        case Call() | OneWayCall():
            _check_call(command, limits)
        case Output(result=result):
            check_result(result, "the output", limits)
        case ClearAllState() | GetStateKeys() | Input():
            pass
        case _:
            assert_never(command)
