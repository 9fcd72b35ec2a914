"""The endpoint's gRPC server: ``Discover`` answers the manifest, ``Invoke`` runs one attempt,
``Attempts`` many (sdk/_transport/attempts.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import grpc

from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc
from sdk._engine.machine import JOURNAL_MISMATCH_CODE, InvocationMachine
from sdk._transport.attempts import AttemptsStream, Launched
from sdk._transport.identity import (
    ATTEMPTS_SUBJECT,
    DISCOVER_SUBJECT,
    IdentityError,
    IdentityVerifier,
)
from sdk.context import context_class
from sdk.definitions import App, Handler
from sdk.errors import AttemptClosed, JournalMismatch, ReplayExhausted, Suspended, TerminalError
from sdk.invocation import DEFAULT_MAX_MESSAGE_BYTES, InvocationSession, Outbox, current_session
from sdk.serde import JsonSerde

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
DEFAULT_INACTIVITY_TIMEOUT = timedelta(seconds=60)
UNKNOWN_HANDLER_CODE = 501
# How long a finished attempt keeps its stream open for the runtime to close it.
RUNTIME_CLOSE_TIMEOUT_S = 30.0
# How long a refused (unauthenticated) stream may take to send what it announced.
REFUSAL_DRAIN_S = 5.0
# The runtime pings its streams (keepalive) to notice a peer that stopped answering; accept its
# pings down to every 5 s (a server refuses pings more frequent than it allows with GOAWAY), and
# ping back, so a runtime that vanished does not hold the attempt either.
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.ping_timeout_ms", 10_000),  # (what grpc-core 1.85 waits for a ping's answer)
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
]

_SERVICE_TYPES = {
    "service": pb.SERVICE_TYPE_SERVICE,
    "virtual_object": pb.SERVICE_TYPE_VIRTUAL_OBJECT,
    "workflow": pb.SERVICE_TYPE_WORKFLOW,
}
_KINDS = {
    None: pb.HANDLER_KIND_UNSPECIFIED,
    "exclusive": pb.HANDLER_KIND_EXCLUSIVE,
    "shared": pb.HANDLER_KIND_SHARED,
    "workflow": pb.HANDLER_KIND_WORKFLOW,
}


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


def _optional_ms(delta: timedelta | None) -> int | None:
    return None if delta is None else _ms(delta)


def handler_manifest(handler: Handler) -> pb.HandlerManifest:
    manifest = pb.HandlerManifest(
        name=handler.name,
        kind=_KINDS[handler.kind],
        documentation=handler.description,
        metadata=handler.metadata,
    )
    policy = handler.effective("invocation_retry_policy")
    if policy is not None:
        manifest.retry_policy.CopyFrom(
            pb.RetryPolicy(
                initial_interval_ms=_optional_ms(policy.initial_interval),
                factor=policy.exponentiation_factor,
                max_interval_ms=_optional_ms(policy.max_interval),
                max_attempts=policy.max_attempts or 0,
            )
        )
    for attribute, field in (
        ("inactivity_timeout", "inactivity_timeout_ms"),
        ("abort_timeout", "abort_timeout_ms"),
        ("idempotency_retention", "idempotency_retention_ms"),
        ("workflow_retention", "workflow_retention_ms"),
    ):
        value = handler.effective(attribute)
        if value is not None:
            setattr(manifest, field, _ms(value))
    manifest.input.CopyFrom(_input_payload(handler))
    manifest.output.CopyFrom(_output_payload(handler))
    return manifest


def inactivity_timeout_of(handler: Handler) -> timedelta:
    """The handler's (or service's) inactivity timeout; ``timedelta(0)`` means suspend at once."""
    timeout: timedelta | None = handler.effective("inactivity_timeout")
    return DEFAULT_INACTIVITY_TIMEOUT if timeout is None else timeout


def _input_payload(handler: Handler) -> pb.InputPayload:
    """As restate-sdk declares it: a handler without an argument takes no body; one with an
    argument also accepts none (it gets ``None``), else a non-empty body of an accepted type."""
    if not handler.takes_argument:
        return pb.InputPayload(required=False)
    return pb.InputPayload(
        required=False,
        content_type=handler.accept,
        non_empty=True,
        json=isinstance(handler.input_serde, JsonSerde),
    )


def _output_payload(handler: Handler) -> pb.OutputPayload:
    if not handler.returns_value:
        return pb.OutputPayload(set_content_type_if_empty=False)
    return pb.OutputPayload(content_type=handler.content_type, set_content_type_if_empty=False)


def manifest_of(app: App, *, message_batches: bool = True, multiplex: bool = True) -> pb.Manifest:
    return pb.Manifest(
        protocol_version=PROTOCOL_VERSION,
        message_batches=message_batches,
        multiplex=multiplex,
        services=[
            pb.ServiceManifest(
                name=service.name,
                type=_SERVICE_TYPES[service.type],
                handlers=[handler_manifest(h) for h in service.handlers.values()],
                documentation=service.description,
                metadata=service.metadata,
            )
            for service in app.services.values()
        ],
    )


class EndpointServicer(endpoint_pb2_grpc.EndpointServicer):
    def __init__(
        self,
        app: App,
        verifier: IdentityVerifier | None = None,
        *,
        message_batches: bool = True,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        multiplex: bool = True,
    ) -> None:
        self._app = app
        self._manifest = manifest_of(app, message_batches=message_batches, multiplex=multiplex)
        self._verifier = verifier
        self._message_batches = message_batches
        self._multiplex = multiplex
        self._max_message_bytes = max_message_bytes

    def _refusal(self, context: Any, subject: str | None) -> tuple[dict[str, Any] | None, str]:
        """The signed token's claims (None without identity keys) and why the call must be
        refused ("" if it need not): unsigned, wrongly signed, expired, replayed, misdirected."""
        if self._verifier is None:
            return None, ""
        try:
            return self._verifier.verify(context.invocation_metadata() or (), subject), ""
        except IdentityError as exc:
            return None, str(exc)

    async def _refuse(self, context: Any, reason: str) -> None:
        log.warning("refused a call: %s (from %s)", reason, context.peer())
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    async def Discover(self, request: pb.DiscoverRequest, context: Any) -> pb.Manifest:
        _, refusal = self._refusal(context, DISCOVER_SUBJECT)
        if refusal:
            await self._refuse(context, refusal)
        return self._manifest

    async def Invoke(
        self, request_iterator: AsyncIterator[pb.RuntimeMessage], context: Any
    ) -> AsyncIterator[pb.SdkMessage]:
        claims, refusal = self._refusal(context, None)
        requests = request_iterator.__aiter__()
        try:
            # A refused caller's Start and journal are read (never used) before the refusal:
            # ending a call while the client still writes turns its status into INTERNAL
            # (grpc/grpc#36066), and the runtime should learn it was UNAUTHENTICATED.
            async with asyncio.timeout(REFUSAL_DRAIN_S if refusal else None):
                messages = _unbatched(requests, context, self._message_batches)
                start, journal = await _read_start(messages, context, keep=not refusal)
        except (TimeoutError, StopAsyncIteration):
            start, journal = None, []  # (the caller stopped sending, or took too long)
        if start is not None and claims is not None and claims["sub"] != start.invocation_id:
            refusal = "the call's token was issued for another invocation"
        if refusal:
            await self._refuse(context, refusal)
        if start is None:
            return
        handler = self._app.handler(start.service, start.handler)
        if handler is None:
            yield _unknown_handler(start)
            return
        timeout = inactivity_timeout_of(handler)
        session = InvocationSession(
            InvocationMachine(start, journal),
            timeout.total_seconds(),
            batches=self._message_batches and start.message_batches,
            max_message_bytes=self._max_message_bytes,
        )
        reader = asyncio.create_task(_read(messages, session))
        attempt = asyncio.create_task(run_attempt(session, handler))
        attempt.add_done_callback(lambda _: session.outgoing.put_nowait(None))
        try:
            while (message := await session.outgoing.get()) is not None:
                yield message
            # The attempt has said how it ended; the runtime closes the stream once it has read
            # that. Ending the call first would make the runtime's in-flight writes fail, and
            # grpc.aio then reports INTERNAL in place of our last message (grpc/grpc#36066).
            await asyncio.wait({reader}, timeout=RUNTIME_CLOSE_TIMEOUT_S)
        finally:
            for task in (reader, attempt):
                task.cancel()
            await asyncio.gather(reader, attempt, return_exceptions=True)

    async def Attempts(
        self, request_iterator: AsyncIterator[pb.RuntimeFrames], context: Any
    ) -> AsyncIterator[bytes]:
        if not self._multiplex:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                "this endpoint serves one Invoke call per attempt (its manifest says so)",
            )
        _, refusal = self._refusal(context, ATTEMPTS_SUBJECT)
        if refusal:
            await self._refuse(context, refusal)
        # Accepted: the runtime writes nothing before it has these (see proto, "Multiplexed").
        await context.send_initial_metadata(())
        stream = AttemptsStream(self._launch, self._max_message_bytes)
        async for message in stream.serve(request_iterator):
            yield message

    def _launch(
        self, start: pb.Start, journal: list[pb.JournalEntry], outgoing: Outbox
    ) -> Launched | pb.SdkMessage:
        """An attempt on an Attempts stream: its session and handler task, as Invoke's."""
        handler = self._app.handler(start.service, start.handler)
        if handler is None:
            return _unknown_handler(start)
        session = InvocationSession(
            InvocationMachine(start, journal),
            inactivity_timeout_of(handler).total_seconds(),
            batches=start.message_batches,
            max_message_bytes=self._max_message_bytes,
            outgoing=outgoing,
            framed=True,
        )
        return session, asyncio.create_task(run_attempt(session, handler))


def _unknown_handler(start: pb.Start) -> pb.SdkMessage:
    return pb.SdkMessage(
        error=pb.Error(
            code=UNKNOWN_HANDLER_CODE,
            message=f"this endpoint has no handler {start.service}/{start.handler}",
            retryable=True,
        )
    )


def add_servicer(servicer: EndpointServicer, server: grpc.aio.Server) -> None:
    """As the generated ``add_EndpointServicer_to_server``, except that ``Attempts`` yields
    SdkFrames already encoded (proto/frames.py)."""
    handlers = {
        "Discover": grpc.unary_unary_rpc_method_handler(
            servicer.Discover,
            request_deserializer=pb.DiscoverRequest.FromString,
            response_serializer=pb.Manifest.SerializeToString,
        ),
        "Invoke": grpc.stream_stream_rpc_method_handler(
            servicer.Invoke,
            request_deserializer=pb.RuntimeMessage.FromString,
            response_serializer=pb.SdkMessage.SerializeToString,
        ),
        "Attempts": grpc.stream_stream_rpc_method_handler(
            servicer.Attempts,
            request_deserializer=pb.RuntimeFrames.FromString,
            response_serializer=None,
        ),
    }
    service = "cairn.endpoint.v1.Endpoint"
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


async def _read(requests: AsyncIterator[pb.RuntimeMessage], session: InvocationSession) -> None:
    try:
        async for message in requests:
            session.on_runtime_message(message)
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        pass
    finally:
        session.on_runtime_gone()


async def run_attempt(session: InvocationSession, handler: Handler) -> None:
    """Run the handler to its end and report how it ended (output, failure or suspension)."""
    machine = session.machine
    ctx = context_class(handler.service.type, handler.kind)(session)
    current_session.set(session)  # this task's (and its steps') context only
    try:
        try:
            async with contextlib.AsyncExitStack() as stack:
                # invocation_context_managers, entered around decoding and the handler as in
                # restate-sdk
                for factory in handler.context_managers:
                    await stack.enter_async_context(factory())
                if handler.takes_argument:
                    argument = handler.input_serde.deserialize(machine.input.value)
                    result = await handler.fn(ctx, argument)
                else:
                    result = await handler.fn(ctx)
            output = pb.OutputCommand(value=handler.output_serde.serialize(result))
        except TerminalError as exc:
            output = pb.OutputCommand(failure=exc.to_failure())
        session.command(pb.JournalCommand(output=output))
        machine.sys_end()
    except JournalMismatch as exc:
        log.error("%s: %s", machine.start.invocation_id, exc)
        machine.sys_error(JOURNAL_MISMATCH_CODE, str(exc), exc.index)
    except ReplayExhausted:
        machine.sys_end()  # an upgrade check: the whole journal replayed cleanly
    except (Suspended, AttemptClosed):
        pass
    except Exception as exc:  # noqa: BLE001 - a retryable failure of this attempt
        log.warning(
            "%s %s/%s attempt %d failed: %r",
            machine.start.invocation_id,
            handler.service.name,
            handler.name,
            machine.start.attempt,
            exc,
        )
        detail = "".join(traceback.format_exception_only(exc)).strip()
        machine.sys_error(500, detail)
    session.send()


class TlsFiles:
    """The endpoint's certificate and key (PEM), and optionally a CA whose client certificates
    it requires (mutual TLS)."""

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str | None = None) -> None:
        with open(cert_file, "rb") as cert, open(key_file, "rb") as key:
            self._chain = (key.read(), cert.read())
        self._client_ca: bytes | None = None
        if client_ca_file:
            with open(client_ca_file, "rb") as ca:
                self._client_ca = ca.read()

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [self._chain],
            root_certificates=self._client_ca,
            require_client_auth=self._client_ca is not None,
        )


async def _unbatched(
    requests: AsyncIterator[pb.RuntimeMessage], context: Any, batches: bool
) -> AsyncIterator[pb.RuntimeMessage]:
    """The runtime's messages one by one, out of the batches they came in. A batch where none
    may be (this endpoint does not declare them, or one inside a batch) ends the call."""
    async for message in requests:
        if message.WhichOneof("kind") != "batch":
            yield message
            continue
        if not batches:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "this endpoint does not read batched messages (its manifest says so)",
            )
        for inner in message.batch.messages:
            if inner.WhichOneof("kind") == "batch":
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "a batch must not hold another batch"
                )
            yield inner


async def _read_start(
    requests: AsyncIterator[pb.RuntimeMessage], context: Any, *, keep: bool = True
) -> tuple[pb.Start, list[pb.JournalEntry]]:
    """The stream's Start and the journal entries it announces (read and dropped unless
    ``keep``: an unauthenticated caller's journal takes no memory)."""
    first = await anext(requests)
    if first.WhichOneof("kind") != "start":
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the stream must begin with Start")
    journal = []
    for _ in range(first.start.known_entries):
        replayed = await anext(requests)
        if replayed.WhichOneof("kind") != "replay_entry":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected a replay entry")
        if keep:
            journal.append(replayed.replay_entry)
    return first.start, journal


class RunningEndpoint:
    """A started endpoint server; ``port`` is the bound port."""

    def __init__(self, server: grpc.aio.Server, port: int) -> None:
        self.server = server
        self.port = port

    async def stop(self, grace_s: float = 1.0) -> None:
        await self.server.stop(grace_s)


async def start_server(
    app: App,
    host: str = "127.0.0.1",
    port: int = 9080,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    *,
    identity_keys: Sequence[str] | None = None,
    tls: TlsFiles | None = None,
    message_batches: bool = True,
    multiplex: bool = True,
) -> RunningEndpoint:
    """Start serving ``app`` over gRPC on ``host:port`` (port 0 picks a free one).

    ``identity_keys`` (with the app's own): only calls signed by one of them are served.
    ``tls``: serve gRPC over TLS (the runtime registers it as ``grpcs://`` or ``https://``).
    ``message_batches=False``: speak the protocol without batches, as endpoints before them did
    (the manifest does not declare them; one message per gRPC message both ways).
    ``multiplex=False``: serve one ``Invoke`` call per attempt only (the manifest does not declare
    ``Attempts``), as endpoints before it did.
    """
    keys = [*app.identity_keys, *(identity_keys or ())]
    verifier = IdentityVerifier(keys) if keys else None
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *KEEPALIVE_OPTIONS,
        ]
    )
    servicer = EndpointServicer(
        app,
        verifier,
        message_batches=message_batches,
        max_message_bytes=max_message_bytes,
        multiplex=multiplex,
    )
    add_servicer(servicer, server)
    try:
        address = f"{host}:{port}"
        bound = (
            server.add_secure_port(address, tls.server_credentials())
            if tls is not None
            else server.add_insecure_port(address)
        )
    except RuntimeError as exc:  # grpc's way of saying the address is taken or not allowed
        raise OSError(f"cannot bind the endpoint to {host}:{port} (in use?)") from exc
    if bound == 0:
        raise OSError(f"cannot bind the endpoint to {host}:{port} (in use?)")
    await server.start()
    return RunningEndpoint(server, bound)
