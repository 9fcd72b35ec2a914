"""TerminalError as restate-sdk defines it, and its metadata on every path a failure takes."""

from __future__ import annotations

import inspect

import msgspec
import pytest

import sdk as restate
from partition_processor.journal import Failure, Result
from proto import endpoint_pb2 as pb
from runtime.invoker.codec import command_from_pb, command_to_pb, completion_to_pb


def test_signature_matches_restate_sdk() -> None:
    parameters = inspect.signature(restate.TerminalError).parameters
    assert list(parameters) == ["message", "status_code", "metadata"]
    assert parameters["status_code"].default == 500
    assert parameters["metadata"].default is None
    error = restate.TerminalError("nope", 422, {"field": "email"})
    assert (error.message, error.status_code, error.metadata) == ("nope", 422, {"field": "email"})
    assert restate.TerminalError("x").metadata is None
    assert str(error) == "nope"


def test_metadata_must_be_strings() -> None:
    with pytest.raises(TypeError, match="dict\\[str, str\\]"):
        restate.TerminalError("x", 400, {"n": 1})  # type: ignore[dict-item]


def test_wire_round_trip_keeps_metadata() -> None:
    error = restate.TerminalError("nope", 422, {"field": "email", "rule": "format"})
    again = restate.TerminalError.from_failure(error.to_failure())
    assert (again.message, again.status_code, again.metadata) == (
        "nope",
        422,
        {"field": "email", "rule": "format"},
    )
    assert (
        restate.TerminalError.from_failure(restate.TerminalError("x").to_failure()).metadata is None
    )


def test_output_failure_is_stored_and_sent_back_with_metadata() -> None:
    # SDK output -> stored journal entry / result -> completion of the caller's call
    output = pb.JournalCommand(
        output=pb.OutputCommand(failure=restate.TerminalError("nope", 409, {"a": "b"}).to_failure())
    )
    stored = command_from_pb(output)
    result = stored.result  # type: ignore[union-attr]
    assert result == Failure(409, "nope", {"a": "b"})
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(result), type=Result)
    assert decoded == result
    completion = completion_to_pb(decoded)
    assert dict(completion.failure.metadata) == {"a": "b"}
    assert command_to_pb(stored).output.failure.metadata == {"a": "b"}


def test_failures_logged_before_metadata_still_decode() -> None:
    old = msgspec.msgpack.encode({"type": "fail", "code": 400, "message": "old"})
    assert msgspec.msgpack.decode(old, type=Result) == Failure(400, "old")
    # and a failure without metadata is encoded exactly as before
    assert msgspec.msgpack.encode(Failure(400, "old")) == old
