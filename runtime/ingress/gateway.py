"""Turns an ingress request into an ``Invoke`` record and waits for its result.

Replies survive failover (DESIGN §8): the result of a call comes from the partition's leader,
which may be another node and may die between committing the result and delivering it. So a
waiting call (and an attach) re-attaches by invocation id, appending an ``Attach`` with the very
same sink, whenever its partition's leadership changes and, as a safety net for a delivery lost
otherwise, every ``reattach_interval_s``. An ``Attach`` of a sink already waiting changes
nothing; one of a completed invocation answers at once. And a call never waits on a partition
that has no leader: without its result after half of ``leader_timeout_s`` it probes the
partition (an ``Attach`` that only reads), and with no answer to that either by the end of the
timeout it is answered 503 with its invocation id (the invocation runs once the partition has a
leader; attach to it). A probe, not a receipt for every call: a fast call costs nothing more.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

import msgspec

from partition_processor.actions import RespondToIngress, SendReceipt
from partition_processor.commands import (
    Attach,
    DeploymentGone,
    Envelope,
    IngressSink,
    IngressSource,
    Invoke,
    MoveDeployment,
    NotifySignal,
    PatchState,
    Purge,
    Target,
    Terminate,
    encode_envelope,
)
from partition_processor.ids import (
    invocation_id_for,
    object_partition_key,
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
from runtime.metrics import REATTACHES

ManagementCommand = Terminate | Purge | MoveDeployment | DeploymentGone


class RecordTooLarge(InvalidRequest):
    """The request would make a log record larger than the size policy's ``record_bytes``."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class ResultUnavailable(Exception):
    """No result for this request now, but the invocation goes on (attach to it later): the
    answer is 503 with ``Retry-After`` and, once appended, the invocation's id."""

    def __init__(self, message: str, invocation_id: str | None, explanation: str) -> None:
        super().__init__(message)
        self.invocation_id = invocation_id
        self.explanation = explanation


class ShuttingDown(ResultUnavailable):
    """The node stops before the result came."""

    def __init__(self, invocation_id: str | None = None) -> None:
        super().__init__(
            "the node is shutting down",
            invocation_id,
            "the node is shutting down before the result came",
        )


class NoLeader(ResultUnavailable):
    """The partition's leader did not take the request within the leader timeout."""

    def __init__(self, invocation_id: str, partition: int, timeout_s: float) -> None:
        super().__init__(
            f"partition {partition} has no leader",
            invocation_id,
            f"partition {partition} did not answer within {timeout_s:g} s "
            "(--ingress-leader-timeout): it has no leader now (a node failed; its partitions "
            "move after the cluster session timeout)",
        )


class PatchNotConfirmed(ResultUnavailable):
    """A state patch is in the log but was not applied within the leader timeout: its partition
    has no leader, or the object is busy (the patch applies once the invocations before it
    end). Reading the state tells which."""

    def __init__(self, service: str, key: str, partition: int, timeout_s: float) -> None:
        super().__init__(
            f"the state patch of {service}/{key} was not confirmed within {timeout_s:g} s: "
            f"partition {partition} has no leader, or the object is busy (the patch applies "
            "once the invocations queued before it end); read the state to see whether it did",
            None,
            "the state patch was not confirmed in time",
        )


class PendingResponses:
    """Ingress requests of this node waiting for their invocation's result."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[RespondToIngress]] = {}
        self._shut_down = False
        # Resolved (and replaced) when a partition's leadership changes: its waiting calls
        # re-attach. A future, not an Event: waiters wait on it alongside their result without a
        # task each (never cancelled by a waiter: ``asyncio.wait`` leaves it alone).
        self._leader_changes: dict[int, asyncio.Future[None]] = {}

    def leader_changed(self, partition: int) -> None:
        """The partition has a new leader: its waiting requests re-attach."""
        changed = self._leader_changes.pop(partition, None)
        if changed is not None and not changed.done():
            changed.set_result(None)

    def leader_change(self, partition: int) -> asyncio.Future[None]:
        """Resolved at the next leadership change of ``partition``."""
        changed = self._leader_changes.get(partition)
        if changed is None:
            changed = asyncio.get_running_loop().create_future()
            self._leader_changes[partition] = changed
        return changed

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
        leader_timeout_s: float,
        reattach_interval_s: float,
    ) -> None:
        """``receipt_timeout_s`` (``NodeConfig.send_receipt_timeout_ms``): how long a one-way
        request waits for its receipt once its Invoke is in the log. The receipt comes from the
        partition's leader; across a leadership change it can be lost, and a send must not hang
        for it: the invocation is durable, so the answer is then a plain "Accepted".
        ``leader_timeout_s`` (``NodeConfig.ingress_leader_timeout_ms``): how long a call waits
        for its partition to answer (its result, or a probe) before it gets 503.
        ``reattach_interval_s`` (``NodeConfig.ingress_reattach_interval_ms``): a waiting call
        re-attaches this often."""
        self._leader_timeout_s = leader_timeout_s
        self._reattach_interval_s = reattach_interval_s
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
        sink = IngressSink(self._node_id, request_id)
        result = self._responses.expect(request_id)
        try:
            await self._append(
                invocation_id, target, handler, argument, headers, idempotency_key, sink
            )
            return await self._wait_for_result(invocation_id, sink, result)
        except ShuttingDown:
            raise ShuttingDown(invocation_id) from None
        finally:
            self._responses.forget(request_id)

    async def _wait_for_result(
        self,
        invocation_id: str,
        sink: IngressSink,
        result: asyncio.Future[RespondToIngress],
    ) -> RespondToIngress:
        """Wait for ``result``, re-attaching as needed, while checking (at the same time) that
        the partition has a leader at all.

        Nearly every result comes before anything else is due (a leader check's probe, a
        re-attach): that first stretch is one wait on the result and the partition's leader
        change, with no task of its own (issue 10: a call's fixed costs). Past it, a re-attach
        and the leader check's probe go on concurrently, as below."""
        partition = partition_of(parse_partition_key(invocation_id), self._log.partitions)
        half_s = self._leader_timeout_s / 2
        first_s = min(half_s, self._reattach_interval_s)
        changed = self._responses.leader_change(partition)
        await asyncio.wait((result, changed), timeout=first_s, return_when="FIRST_COMPLETED")
        if result.done():
            return result.result()
        if changed.done():
            # A new leader answered for the partition (the check is done): re-attach there.
            await self._reattach(invocation_id, sink)
            return await self._await_result(invocation_id, sink, result)
        waiting = asyncio.ensure_future(
            self._await_result(invocation_id, sink, result, self._reattach_interval_s - first_s)
        )
        checking = asyncio.ensure_future(
            self._check_leader(invocation_id, result, half_s - first_s)
        )
        try:
            await asyncio.wait((waiting, checking), return_when="FIRST_COMPLETED")
            if checking.done():
                checking.result()  # NoLeader
            return await waiting
        finally:
            for task in (waiting, checking):
                task.cancel()
            await asyncio.gather(waiting, checking, return_exceptions=True)

    async def _check_leader(
        self, invocation_id: str, result: asyncio.Future[RespondToIngress], first_s: float
    ) -> None:
        """Raise ``NoLeader`` unless the partition answers within the leader timeout: the result
        or a new leader's announcement within its first half (of which ``first_s`` is left),
        else an answer to a probe (a reading ``Attach``) within the second."""
        half_s = self._leader_timeout_s / 2
        partition = partition_of(parse_partition_key(invocation_id), self._log.partitions)
        if first_s > 0:
            changed = self._responses.leader_change(partition)
            await asyncio.wait((result, changed), timeout=first_s, return_when="FIRST_COMPLETED")
            if result.done() or changed.done():
                return
        probe_id = uuid.uuid4().hex
        probe = self._responses.expect(probe_id)
        try:
            command = Attach(invocation_id, IngressSink(self._node_id, probe_id), wait=False)
            await self._append_command(invocation_id, command)
            done, _ = await asyncio.wait(
                (result, probe), timeout=half_s, return_when="FIRST_COMPLETED"
            )
        finally:
            self._responses.forget(probe_id)
        if probe.done() and not probe.cancelled():
            probe.exception()  # (ShuttingDown reaches the caller through ``result`` too)
        if not done:
            raise NoLeader(invocation_id, partition, self._leader_timeout_s)

    async def _await_result(
        self,
        invocation_id: str,
        sink: IngressSink,
        result: asyncio.Future[RespondToIngress],
        first_s: float | None = None,
    ) -> RespondToIngress:
        """Wait for ``result``, re-attaching ``sink`` when the invocation's partition changes
        leader or every ``reattach_interval_s`` (see the module's docstring); the first wait
        lasts ``first_s`` (None: the interval), what is left of an interval already waited."""
        partition = partition_of(parse_partition_key(invocation_id), self._log.partitions)
        timeout_s = self._reattach_interval_s if first_s is None else first_s
        while True:
            if timeout_s > 0:
                changed = self._responses.leader_change(partition)
                await asyncio.wait(
                    (result, changed), timeout=timeout_s, return_when="FIRST_COMPLETED"
                )
            if result.done():
                return result.result()
            await self._reattach(invocation_id, sink)
            timeout_s = self._reattach_interval_s

    async def _reattach(self, invocation_id: str, sink: IngressSink) -> None:
        REATTACHES.inc()
        attach = Attach(invocation_id, sink, True, max_attached=self._max_attached)
        await self._append_command(invocation_id, attach)

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
            if not wait:
                return await self._answer(invocation_id, outcome)
            return await self._wait_for_result(invocation_id, sink, outcome)
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
            return (await self._answer(command.invocation_id, outcome)).result
        finally:
            self._responses.forget(request_id)

    async def submit(self, command: ManagementCommand) -> None:
        """Append an admin command without waiting for what it does (its ``sink`` is None)."""
        await self._append_command(command.invocation_id, command)

    async def patch_state(self, command_of: Callable[[IngressSink], PatchState]) -> Result:
        """Append a state patch to its object's partition and return its outcome, once it is
        applied (which waits for the object's running and queued invocations: the leader
        timeout bounds the wait, past it ``PatchNotConfirmed``).

        The patch gets its id here, once: every record of this request carries it, so the
        partition applies the patch once however often the log holds it."""
        request_id = uuid.uuid4().hex
        outcome = self._responses.expect(request_id)
        try:
            command = command_of(IngressSink(self._node_id, request_id))
            command = msgspec.structs.replace(command, patch_id=uuid.uuid4().hex)
            key = object_partition_key(command.service, command.key)
            partition = partition_of(key, self._log.partitions)
            await self._append_to(partition, command)
            try:
                return (await asyncio.wait_for(outcome, self._leader_timeout_s)).result
            except TimeoutError:
                raise PatchNotConfirmed(
                    command.service, command.key, partition, self._leader_timeout_s
                ) from None
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
            return (await self._answer(owner, outcome)).result
        finally:
            self._responses.forget(request_id)

    async def _answer(
        self, route: str, outcome: asyncio.Future[RespondToIngress]
    ) -> RespondToIngress:
        """The answer a leader gives as soon as it applies the record (an output read, a kill,
        an awakeable): no answer within the leader timeout means the partition has no leader."""
        try:
            return await asyncio.wait_for(outcome, self._leader_timeout_s)
        except TimeoutError:
            partition = partition_of(parse_partition_key(route), self._log.partitions)
            raise NoLeader(route, partition, self._leader_timeout_s) from None

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
        partition = partition_of(parse_partition_key(route), self._log.partitions)
        await self._append_to(partition, command)

    async def _append_to(
        self,
        partition: int,
        command: Invoke | NotifySignal | Attach | ManagementCommand | PatchState,
    ) -> None:
        envelope = Envelope(IngressSource(self._node_id), now_ms(), command)
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
