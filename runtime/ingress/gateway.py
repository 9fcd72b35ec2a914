"""Turns an ingress request into an ``Invoke`` record and waits for its result."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

from partition_processor.actions import RespondToIngress
from partition_processor.commands import (
    Attach,
    Envelope,
    IngressSink,
    IngressSource,
    Invoke,
    NotifySignal,
    Purge,
    Target,
    Terminate,
    encode_envelope,
)
from partition_processor.ids import (
    invocation_id_for,
    parse_awakeable_id,
    parse_partition_key,
    partition_of,
    workflow_run_id,
)
from partition_processor.journal import Result
from runtime.clock import now_ms
from runtime.log import Log
from runtime.metadata import HandlerInfo, completion_retention_ms

ManagementCommand = Terminate | Purge


class PendingResponses:
    """Ingress requests of this node waiting for their invocation's result."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[tuple[str, Result]]] = {}

    def expect(self, request_id: str) -> asyncio.Future[tuple[str, Result]]:
        future: asyncio.Future[tuple[str, Result]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    def respond(self, action: RespondToIngress) -> None:
        future = self._waiting.pop(action.sink.request_id, None)
        if future is not None and not future.done():
            future.set_result((action.invocation_id, action.result))


class InvocationGateway:
    def __init__(
        self,
        log: Log,
        node_id: str,
        responses: PendingResponses,
        *,
        max_attached: int,
    ) -> None:
        self._log = log
        self._node_id = node_id
        self._responses = responses
        self._max_attached = max_attached

    def invocation_id_for(self, target: Target, idempotency_key: str | None) -> str:
        """Deterministic for workflow runs and idempotent requests, random otherwise."""
        if target.handler_kind == "workflow" and target.key is not None:
            return workflow_run_id(target.service, target.key)
        return invocation_id_for(
            target.service,
            target.handler,
            target.key,
            idempotency_key,
            entropy=uuid.uuid4().bytes,
        )

    async def call(
        self,
        target: Target,
        handler: HandlerInfo,
        argument: bytes,
        headers: Sequence[tuple[str, str]],
        idempotency_key: str | None,
    ) -> tuple[str, Result]:
        """Append the invocation and wait for its result (or for the caller to go away)."""
        invocation_id = self.invocation_id_for(target, idempotency_key)
        request_id = uuid.uuid4().hex
        result = self._responses.expect(request_id)
        try:
            await self._append(
                invocation_id,
                target,
                handler,
                argument,
                headers,
                idempotency_key,
                IngressSink(self._node_id, request_id),
            )
            return await result
        finally:
            self._responses.forget(request_id)

    async def send(
        self,
        target: Target,
        handler: HandlerInfo,
        argument: bytes,
        headers: Sequence[tuple[str, str]],
        idempotency_key: str | None,
        delay_ms: int = 0,
    ) -> str:
        """Append the invocation without waiting for it; returns its id."""
        invocation_id = self.invocation_id_for(target, idempotency_key)
        invoke_at_ms = now_ms() + delay_ms if delay_ms > 0 else 0
        await self._append(
            invocation_id, target, handler, argument, headers, idempotency_key, None, invoke_at_ms
        )
        return invocation_id

    async def attach(self, invocation_id: str, *, wait: bool) -> Result:
        """The invocation's result: waiting for it, or now (Failure 470 while it runs)."""
        request_id = uuid.uuid4().hex
        outcome = self._responses.expect(request_id)
        try:
            sink = IngressSink(self._node_id, request_id)
            command = Attach(invocation_id, sink, wait, max_attached=self._max_attached)
            await self._append_command(invocation_id, command)
            return (await outcome)[1]
        finally:
            self._responses.forget(request_id)

    async def manage(self, command_of: Callable[[IngressSink], ManagementCommand]) -> Result:
        """Append an admin command (cancel, kill, purge) and return what it did."""
        request_id = uuid.uuid4().hex
        outcome = self._responses.expect(request_id)
        try:
            command = command_of(IngressSink(self._node_id, request_id))
            await self._append_command(command.invocation_id, command)
            return (await outcome)[1]
        finally:
            self._responses.forget(request_id)

    async def complete_awakeable(self, awakeable_id: str, result: Result) -> Result:
        """Resolve or reject an awakeable; returns Success, or Failure 404 / 409."""
        owner, index = parse_awakeable_id(awakeable_id)
        request_id = uuid.uuid4().hex
        outcome = self._responses.expect(request_id)
        try:
            signal = NotifySignal(owner, index, result, IngressSink(self._node_id, request_id))
            await self._append_command(owner, signal)
            return (await outcome)[1]
        finally:
            self._responses.forget(request_id)

    async def _append(
        self,
        invocation_id: str,
        target: Target,
        handler: HandlerInfo,
        argument: bytes,
        headers: Sequence[tuple[str, str]],
        idempotency_key: str | None,
        sink: IngressSink | None,
        invoke_at_ms: int = 0,
    ) -> None:
        retention = completion_retention_ms(handler, idempotency_key is not None)
        command = Invoke(
            invocation_id=invocation_id,
            target=target,
            argument=argument,
            headers=list(headers),
            idempotency_key=idempotency_key,
            sink=sink,
            retry_policy=handler.retry_policy,
            completion_retention_ms=retention,
            invoke_at_ms=invoke_at_ms,
            submission=target.handler_kind == "workflow",
            max_attached=self._max_attached,
        )
        await self._append_command(invocation_id, command)

    async def _append_command(
        self, route: str, command: Invoke | NotifySignal | Attach | ManagementCommand
    ) -> None:
        """Append to the partition that owns invocation id ``route``."""
        envelope = Envelope(IngressSource(self._node_id), now_ms(), command)
        partition = partition_of(parse_partition_key(route), self._log.partitions)
        await self._log.append(partition, [encode_envelope(envelope)])
