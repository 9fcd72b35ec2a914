"""Turns an ingress request into an ``Invoke`` record and waits for its result."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

from partition_processor.actions import RespondToIngress, SendReceipt
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
from partition_processor.limits import add_ms
from runtime.clock import now_ms
from runtime.ingress.validation import InvalidRequest
from runtime.log import Log, LogError
from runtime.metadata import HandlerInfo, completion_retention_ms

ManagementCommand = Terminate | Purge


class RecordTooLarge(InvalidRequest):
    """The request would make a log record larger than the size policy's ``record_bytes``."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class ShuttingDown(Exception):
    """The node stops before the result came; the invocation goes on (attach to it later)."""

    def __init__(self, invocation_id: str | None = None) -> None:
        super().__init__("the node is shutting down")
        self.invocation_id = invocation_id


class PendingResponses:
    """Ingress requests of this node waiting for their invocation's result."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[RespondToIngress]] = {}
        self._shut_down = False

    def shut_down(self) -> None:
        """Answer every waiting request with ``ShuttingDown``; later ones get it at once."""
        self._shut_down = True
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ShuttingDown())

    def expect(self, request_id: str) -> asyncio.Future[RespondToIngress]:
        if self._shut_down:
            raise ShuttingDown()
        future: asyncio.Future[RespondToIngress] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    def respond(self, action: RespondToIngress) -> None:
        future = self._waiting.pop(action.sink.request_id, None)
        if future is not None and not future.done():
            future.set_result(action)


class InvocationGateway:
    def __init__(
        self,
        log: Log,
        node_id: str,
        responses: PendingResponses,
        *,
        max_record_bytes: int,
        max_attached: int,
        receipt_timeout_s: float,
    ) -> None:
        """``receipt_timeout_s`` (``NodeConfig.send_receipt_timeout_ms``): how long a one-way
        request waits for its receipt once its Invoke is in the log. The receipt comes from the
        partition's leader; across a leadership change it can be lost, and a send must not hang
        for it: the invocation is durable, so the answer is then a plain "Accepted"."""
        self._log = log
        self._node_id = node_id
        self._responses = responses
        self._max_record_bytes = max_record_bytes
        self._receipt_timeout_s = receipt_timeout_s
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
    ) -> RespondToIngress:
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
        except ShuttingDown:
            raise ShuttingDown(invocation_id) from None
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
    ) -> tuple[str, SendReceipt]:
        """Append the invocation without waiting for its result; returns its id and whether
        this request created it (an idempotency key or workflow key seen before did not)."""
        invocation_id = self.invocation_id_for(target, idempotency_key)
        invoke_at_ms = add_ms(now_ms(), delay_ms) if delay_ms > 0 else 0
        request_id = uuid.uuid4().hex
        outcome = self._responses.expect(request_id)
        try:
            await self._append(
                invocation_id,
                target,
                handler,
                argument,
                headers,
                idempotency_key,
                None,
                invoke_at_ms,
                receipt_sink=IngressSink(self._node_id, request_id),
            )
            try:
                receipt = (await asyncio.wait_for(outcome, self._receipt_timeout_s)).receipt
            except (TimeoutError, ShuttingDown):
                # (The node stopping while the receipt is on its way: the Invoke is durable, so
                # the send was accepted all the same; a 503 would invite a duplicate.)
                receipt = SendReceipt(True, invoke_at_ms)
        finally:
            self._responses.forget(request_id)
        assert receipt is not None, "an Invoke with a receipt sink is answered with a receipt"
        return invocation_id, receipt

    async def attach(self, invocation_id: str, *, wait: bool) -> RespondToIngress:
        """The invocation's result: waiting for it, or now (refused with 470 while it runs)."""
        request_id = uuid.uuid4().hex
        try:
            outcome = self._responses.expect(request_id)
            sink = IngressSink(self._node_id, request_id)
            command = Attach(invocation_id, sink, wait, max_attached=self._max_attached)
            await self._append_command(invocation_id, command)
            return await outcome
        except ShuttingDown:
            raise ShuttingDown(invocation_id) from None
        finally:
            self._responses.forget(request_id)

    async def manage(self, command_of: Callable[[IngressSink], ManagementCommand]) -> Result:
        """Append an admin command (cancel, kill, purge) and return what it did."""
        request_id = uuid.uuid4().hex
        outcome = self._responses.expect(request_id)
        try:
            command = command_of(IngressSink(self._node_id, request_id))
            await self._append_command(command.invocation_id, command)
            return (await outcome).result
        finally:
            self._responses.forget(request_id)

    async def submit(self, command: ManagementCommand) -> None:
        """Append an admin command without waiting for what it does (its ``sink`` is None)."""
        await self._append_command(command.invocation_id, command)

    async def complete_awakeable(self, awakeable_id: str, result: Result) -> Result:
        """Resolve or reject an awakeable; returns Success, or Failure 404 / 409."""
        owner, index = parse_awakeable_id(awakeable_id)
        request_id = uuid.uuid4().hex
        outcome = self._responses.expect(request_id)
        try:
            signal = NotifySignal(owner, index, result, IngressSink(self._node_id, request_id))
            await self._append_command(owner, signal)
            return (await outcome).result
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
        receipt_sink: IngressSink | None = None,
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
            receipt_sink=receipt_sink,
            max_attached=self._max_attached,
        )
        await self._append_command(invocation_id, command)

    async def _append_command(
        self, route: str, command: Invoke | NotifySignal | Attach | ManagementCommand
    ) -> None:
        """Append to the partition that owns invocation id ``route``."""
        envelope = Envelope(IngressSource(self._node_id), now_ms(), command)
        partition = partition_of(parse_partition_key(route), self._log.partitions)
        record = encode_envelope(envelope)
        if len(record) > self._max_record_bytes:
            # The body, key and header limits keep requests below this; the log's own limit
            # would refuse the append less clearly.
            raise RecordTooLarge(
                f"the request makes a record of {len(record)} bytes, "
                f"over the log's limit of {self._max_record_bytes}"
            )
        try:
            await self._log.append(partition, [record])
        except LogError as exc:
            # Unavailable, not a bad request: the client may retry (an idempotency key makes
            # that safe even if the record was appended after all).
            raise InvalidRequest(503, f"the log did not take the request, retry: {exc}") from exc
