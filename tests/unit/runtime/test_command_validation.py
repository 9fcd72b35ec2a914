"""What the invoker refuses from an endpoint before it reaches the log (DESIGN §11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from partition_processor import codes
from partition_processor.ids import awakeable_id, make_invocation_id
from partition_processor.journal import (
    Call,
    CallTarget,
    CancelInvocation,
    CompleteAwakeable,
    GetState,
    JournalCommand,
    OneWayCall,
    Output,
    Run,
    SetState,
    Sleep,
    Success,
)
from runtime.config import NodeConfig
from runtime.invoker.validation import InvalidCommand, check_command, check_index

POLICY = NodeConfig(data_dir=Path("unused"), ingress_max_body_bytes=1000).size_policy()
LONG = "k" * (POLICY.key_bytes + 1)
BIG = b"x" * (POLICY.entry_bytes + 1)
OWNER = make_invocation_id(1, bytes(16))


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (GetState(LONG), codes.INVALID_COMMAND),
        (SetState("n", BIG), codes.TOO_LARGE),
        (SetState("\udcff", b"1"), codes.INVALID_COMMAND),
        (Run(LONG), codes.INVALID_COMMAND),
        (Sleep(2**64 - 1), codes.INVALID_COMMAND),
        (Output(Success(BIG)), codes.TOO_LARGE),
        (Call(CallTarget("Counter", "add", LONG), b"1"), codes.INVALID_COMMAND),
        (Call(CallTarget("Counter", "add", "k"), BIG), codes.TOO_LARGE),
        (Call(CallTarget("Counter", "add", "k"), b"1", idempotency_key=LONG), 400),
        (OneWayCall(CallTarget("S", "h"), b"1", invoke_at_ms=2**64 - 1), codes.INVALID_COMMAND),
        (CompleteAwakeable(awakeable_id("inv_-" + "0" * 47, 1), Success(b"1")), 400),
        (CancelInvocation("inv_-" + "0" * 47), codes.INVALID_COMMAND),
    ],
)
def test_commands_that_cannot_be_applied_are_refused(command: JournalCommand, code: int) -> None:
    with pytest.raises(InvalidCommand) as refused:
        check_command(command, POLICY)
    assert refused.value.code == code and refused.value.message


@pytest.mark.parametrize(
    "command",
    [
        GetState("k" * POLICY.key_bytes),
        SetState("n", b"x" * POLICY.entry_bytes),
        Sleep(253_402_300_799_999),
        Call(CallTarget("Counter", "add", "k"), b"1"),
        CompleteAwakeable(awakeable_id(OWNER, 3), Success(b"1")),
        CancelInvocation(OWNER),
    ],
)
def test_commands_within_the_policy_pass(command: JournalCommand) -> None:
    check_command(command, POLICY)


def test_journal_indexes_fit_the_journal_key() -> None:
    check_index(2**32 - 1)
    with pytest.raises(InvalidCommand):
        check_index(2**32)
