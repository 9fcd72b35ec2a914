"""Conversion between stored journal structs and the wire messages of proto/endpoint.proto."""

from __future__ import annotations

from typing import assert_never

from partition_processor import journal as j
from partition_processor.commands import RetryPolicy
from proto import endpoint_pb2 as pb


def failure_to_pb(failure: j.Failure) -> pb.Failure:
    return pb.Failure(code=failure.code, message=failure.message, metadata=failure.metadata)


def completion_to_pb(completion: j.Completion) -> pb.Completion:
    match completion:
        case j.Success(value=value):
            return pb.Completion(value=value)
        case j.Void():
            return pb.Completion(void=pb.Empty())
        case j.Failure():
            return pb.Completion(failure=failure_to_pb(completion))
        case j.StateKeys(keys=keys):
            return pb.Completion(state_keys=pb.StateKeys(keys=keys))
        case _:
            assert_never(completion)


def _result_fields(result: j.Result) -> dict[str, object]:
    match result:
        case j.Success(value=value):
            return {"value": value}
        case j.Failure():
            return {"failure": failure_to_pb(result)}
        case _:
            assert_never(result)


def command_to_pb(command: j.JournalCommand) -> pb.JournalCommand:
    match command:
        case j.Input(value=value, headers=headers):
            return pb.JournalCommand(
                input=pb.InputCommand(
                    value=value, headers=[pb.Header(key=k, value=v) for k, v in headers]
                )
            )
        case j.Output(result=result):
            return pb.JournalCommand(output=pb.OutputCommand(**_result_fields(result)))  # type: ignore[arg-type]
        case j.GetState(key=key):
            return pb.JournalCommand(get_state=pb.GetStateCommand(key=key))
        case j.SetState(key=key, value=value):
            return pb.JournalCommand(set_state=pb.SetStateCommand(key=key, value=value))
        case j.ClearState(key=key):
            return pb.JournalCommand(clear_state=pb.ClearStateCommand(key=key))
        case j.ClearAllState():
            return pb.JournalCommand(clear_all_state=pb.ClearAllStateCommand())
        case j.GetStateKeys():
            return pb.JournalCommand(get_state_keys=pb.GetStateKeysCommand())
        case j.Run(name=name):
            return pb.JournalCommand(run=pb.RunCommand(name=name))
        case j.Call():
            return pb.JournalCommand(
                call=pb.CallCommand(
                    target=_target_to_pb(command.target),
                    argument=command.argument,
                    headers=[pb.Header(key=k, value=v) for k, v in command.headers],
                    idempotency_key=command.idempotency_key,
                    invocation_id=command.invocation_id,
                )
            )
        case j.OneWayCall():
            return pb.JournalCommand(
                one_way_call=pb.OneWayCallCommand(
                    target=_target_to_pb(command.target),
                    argument=command.argument,
                    headers=[pb.Header(key=k, value=v) for k, v in command.headers],
                    idempotency_key=command.idempotency_key,
                    invoke_at_ms=command.invoke_at_ms,
                    invocation_id=command.invocation_id,
                )
            )
        case j.Sleep(wake_up_ms=wake_up_ms, name=name):
            return pb.JournalCommand(sleep=pb.SleepCommand(wake_up_ms=wake_up_ms, name=name))
        case j.Awakeable(name=name):
            return pb.JournalCommand(awakeable=pb.AwakeableCommand(name=name))
        case j.CompleteAwakeable(awakeable_id=awakeable_id, result=result):
            return pb.JournalCommand(
                complete_awakeable=pb.CompleteAwakeableCommand(
                    awakeable_id=awakeable_id,
                    **_result_fields(result),  # type: ignore[arg-type]
                )
            )
        case j.GetPromise(name=name):
            return pb.JournalCommand(get_promise=pb.GetPromiseCommand(name=name))
        case j.PeekPromise(name=name):
            return pb.JournalCommand(peek_promise=pb.PeekPromiseCommand(name=name))
        case j.CompletePromise(name=name, result=result):
            return pb.JournalCommand(
                complete_promise=pb.CompletePromiseCommand(
                    name=name,
                    **_result_fields(result),  # type: ignore[arg-type]
                )
            )
        case j.CancelInvocation(invocation_id=invocation_id):
            return pb.JournalCommand(
                cancel_invocation=pb.CancelInvocationCommand(invocation_id=invocation_id)
            )
        case _:
            assert_never(command)


def _target_to_pb(target: j.CallTarget) -> pb.CallTarget:
    return pb.CallTarget(service=target.service, handler=target.handler, key=target.key)


def _target_from_pb(target: pb.CallTarget) -> j.CallTarget:
    key = target.key if target.HasField("key") else None
    return j.CallTarget(target.service, target.handler, key)


def entry_to_pb(index: int, entry: j.JournalEntry) -> pb.JournalEntry:
    message = pb.JournalEntry(
        index=index, command=command_to_pb(entry.command), completion_seq=entry.completion_seq
    )
    if entry.completion is not None:
        message.completion.CopyFrom(completion_to_pb(entry.completion))
    return message


class ProtocolViolation(Exception):
    """The SDK sent something the protocol does not allow."""


def _result_from(
    message: pb.OutputCommand
    | pb.ProposeRunCompletion
    | pb.CompleteAwakeableCommand
    | pb.CompletePromiseCommand,
) -> j.Result:
    which = message.WhichOneof("result")
    if which == "value":
        return j.Success(message.value)
    if which == "failure":
        failure = message.failure
        return j.Failure(failure.code, failure.message, dict(failure.metadata))
    return j.Success(b"")


def command_from_pb(message: pb.JournalCommand) -> j.JournalCommand:
    which = message.WhichOneof("kind")
    match which:
        case "output":
            return j.Output(_result_from(message.output))
        case "get_state":
            return j.GetState(message.get_state.key)
        case "set_state":
            return j.SetState(message.set_state.key, message.set_state.value)
        case "clear_state":
            return j.ClearState(message.clear_state.key)
        case "clear_all_state":
            return j.ClearAllState()
        case "get_state_keys":
            return j.GetStateKeys()
        case "run":
            return j.Run(message.run.name)
        case "call":
            call = message.call
            return j.Call(
                target=_target_from_pb(call.target),
                argument=call.argument,
                headers=[(h.key, h.value) for h in call.headers],
                idempotency_key=call.idempotency_key if call.HasField("idempotency_key") else None,
            )
        case "one_way_call":
            send = message.one_way_call
            return j.OneWayCall(
                target=_target_from_pb(send.target),
                argument=send.argument,
                headers=[(h.key, h.value) for h in send.headers],
                idempotency_key=send.idempotency_key if send.HasField("idempotency_key") else None,
                invoke_at_ms=send.invoke_at_ms,
            )
        case "sleep":
            return j.Sleep(message.sleep.wake_up_ms, message.sleep.name)
        case "awakeable":
            return j.Awakeable(message.awakeable.name)
        case "complete_awakeable":
            complete = message.complete_awakeable
            if not complete.HasField("value") and not complete.HasField("failure"):
                raise ProtocolViolation("complete_awakeable needs a value or a failure")
            return j.CompleteAwakeable(complete.awakeable_id, _result_from(complete))
        case "get_promise":
            return j.GetPromise(message.get_promise.name)
        case "peek_promise":
            return j.PeekPromise(message.peek_promise.name)
        case "complete_promise":
            promise = message.complete_promise
            if not promise.HasField("value") and not promise.HasField("failure"):
                raise ProtocolViolation("complete_promise needs a value or a failure")
            return j.CompletePromise(promise.name, _result_from(promise))
        case "cancel_invocation":
            return j.CancelInvocation(message.cancel_invocation.invocation_id)
        case _:
            raise ProtocolViolation(f"the SDK may not propose a {which!r} command")


def eager_read_from_pb(command: j.JournalCommand, completion: pb.Completion) -> j.Completion:
    """The result of a state read the SDK answered from the eager state: only a get_state
    (value or void) or a get_state_keys (keys) may carry one."""
    which = completion.WhichOneof("result")
    match command, which:
        case j.GetState(), "value":
            return j.Success(completion.value)
        case j.GetState(), "void":
            return j.Void()
        case j.GetStateKeys(), "state_keys":
            return j.StateKeys(list(completion.state_keys.keys))
        case _:
            raise ProtocolViolation(f"a {which!r} result may not come with that command")


def run_result_from_pb(message: pb.ProposeRunCompletion) -> j.Result:
    return _result_from(message)


def retry_policy_from_pb(message: pb.RetryPolicy) -> RetryPolicy:
    default = RetryPolicy()
    # An unset field takes the default; a zero that was set is honoured (timedelta(0) != None).
    return RetryPolicy(
        initial_interval_ms=(
            message.initial_interval_ms
            if message.HasField("initial_interval_ms")
            else default.initial_interval_ms
        ),
        factor=message.factor if message.HasField("factor") else default.factor,
        max_interval_ms=(
            message.max_interval_ms
            if message.HasField("max_interval_ms")
            else default.max_interval_ms
        ),
        max_attempts=message.max_attempts,
    )
