"""A state read the SDK answered itself, as it arrives on the stream: only a read may carry an
answer, of its own kind, bounded like any value."""

from __future__ import annotations

from pathlib import Path

import pytest

from partition_processor import codes
from partition_processor.journal import GetState, GetStateKeys, Run, StateKeys, Success, Void
from proto import endpoint_pb2 as pb
from runtime.config import NodeConfig
from runtime.invoker.codec import ProtocolViolation, eager_read_from_pb
from runtime.invoker.validation import InvalidCommand, check_eager_read


def test_reads_carry_answers_of_their_kind() -> None:
    assert eager_read_from_pb(GetState("n"), pb.Completion(value=b"1")) == Success(b"1")
    assert eager_read_from_pb(GetState("n"), pb.Completion(void=pb.Empty())) == Void()
    keys = pb.Completion(state_keys=pb.StateKeys(keys=["a", "b"]))
    assert eager_read_from_pb(GetStateKeys(), keys) == StateKeys(["a", "b"])


@pytest.mark.parametrize(
    ("command", "completion"),
    [
        (Run("step"), pb.Completion(value=b"1")),
        (GetState("n"), pb.Completion(state_keys=pb.StateKeys(keys=["a"]))),
        (GetStateKeys(), pb.Completion(value=b"1")),
        (GetState("n"), pb.Completion(failure=pb.Failure(code=500, message="no"))),
        (GetState("n"), pb.Completion()),
    ],
)
def test_anything_else_is_a_protocol_violation(
    command: GetState | GetStateKeys | Run, completion: pb.Completion
) -> None:
    with pytest.raises(ProtocolViolation):
        eager_read_from_pb(command, completion)


def test_answers_are_bounded_like_values_and_keys() -> None:
    config = NodeConfig(data_dir=Path("unused"), ingress_max_body_bytes=1024, max_key_bytes=64)
    limits = config.size_policy()
    check_eager_read(Success(b"x" * 1024), limits)
    with pytest.raises(InvalidCommand) as too_large:
        check_eager_read(Success(b"x" * 1025), limits)
    assert too_large.value.code == codes.TOO_LARGE
    with pytest.raises(InvalidCommand):
        check_eager_read(StateKeys(["k" * 65]), limits)
    assert limits.eager_state_bytes == 1024  # never above the body limit
