"""What an attempt makes of each SDK message: the effect to append (DESIGN §6).

A message is checked (index, size policy, the command's fields) and the callee of a call is
resolved against the registry here, since the state machine has none.
"""

from __future__ import annotations

import logging

from partition_processor import codes
from partition_processor.commands import (
    CompleteRun,
    Effect,
    End,
    Failed,
    JournalAppend,
    ResolvedTarget,
    Suspended,
)
from partition_processor.journal import Call, OneWayCall
from proto import endpoint_pb2 as pb
from runtime.invoker import codec
from runtime.invoker.channels import ChannelPool
from runtime.invoker.validation import (
    MAX_ERROR_MESSAGE_CHARS,
    InvalidCommand,
    check_command,
    check_eager_read,
    check_index,
    check_result,
)
from runtime.limits import SizePolicy
from runtime.metadata import Registry, completion_retention_ms

# The attempt's logger: its lines (an SDK-reported failure) are logged under that name.
log = logging.getLogger("runtime.invoker.attempt")


class AttemptMessages:
    """The SDK-message methods of ``Attempt`` (a mixin: ``Attempt.__init__`` sets these)."""

    invocation_id: str
    number: int
    _limits: SizePolicy
    _channels: ChannelPool
    _registry: Registry

    def _effect_of(self, message: pb.SdkMessage, which: str | None) -> Effect:
        match which:
            case "command":
                command = codec.command_from_pb(message.command.command)
                check_index(message.command.index)
                check_command(command, self._limits)
                if (seal := self._channels.security.seal) is not None:
                    command = seal.seal_command(command)  # secret headers never stored in clear
                resolved = None
                if isinstance(command, Call | OneWayCall):
                    resolved = self._resolve(command)
                answered = None
                if message.command.HasField("completion"):
                    answered = codec.eager_read_from_pb(command, message.command.completion)
                    check_eager_read(answered, self._limits)
                return JournalAppend(message.command.index, command, resolved, answered)
            case "run_completion":
                completion = message.run_completion
                check_index(completion.index)
                result = codec.run_result_from_pb(completion)
                check_result(result, "the run result", self._limits)
                return CompleteRun(completion.index, result)
            case "error":
                error = message.error
                text = error.message
                if len(text) > MAX_ERROR_MESSAGE_CHARS:
                    text = text[:MAX_ERROR_MESSAGE_CHARS] + "... (truncated)"
                if error.retryable:
                    log.warning(
                        "%s attempt %d failed (%d): %.500s",
                        self.invocation_id,
                        self.number,
                        error.code,
                        text,
                    )
                return Failed(error.code or 500, text, error.retryable)
            case "end":
                return End()
            case "suspension":
                awaiting = list(message.suspension.awaiting_entries)
                if len(awaiting) > 10_000:
                    raise InvalidCommand(codes.INVALID_COMMAND, "a suspension awaits too much")
                return Suspended(awaiting)
            case "batch":
                # (A batch is taken apart by Attempt._read: one here is inside another.)
                raise codec.ProtocolViolation("a batch must not hold another batch")
            case _:
                raise codec.ProtocolViolation(f"unexpected SDK message {which!r}")

    def _resolve(self, command: Call | OneWayCall) -> ResolvedTarget | None:
        """Look the callee up now: the state machine has no registry (None = unknown, 404)."""
        target = command.target
        service = self._registry.service(target.service)
        resolved = service.resolve(target.handler, target.key) if service is not None else None
        if resolved is None:
            return None
        full_target, handler = resolved
        retention = completion_retention_ms(handler, command.idempotency_key is not None)
        return ResolvedTarget(full_target, handler.retry_policy, retention)
