"""One gRPC channel per SDK endpoint, shared by every attempt on this node; on it, one
``Attempts`` stream per deployment that multiplexes (runtime/invoker/shared_stream.py)."""

from __future__ import annotations

import asyncio

import grpc

from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc
from runtime.invoker.discovery import endpoint_address
from runtime.invoker.shared_stream import ATTEMPTS_METHOD, SharedStream
from runtime.security.endpoints import EndpointSecurity
from runtime.security.identity import TOKEN_LIFETIME_S

# New attempts go to a new stream once one is this old (the old one closes when its attempts
# end): a stream is verified once, when it opens, so its token's lifetime bounds how long one
# verification admits new attempts.
ROTATE_AFTER_S = float(TOKEN_LIFETIME_S)


class ChannelPool:
    """``security``: TLS for ``grpcs://``/``https://`` deployments, the request signature of
    every stream (``invoke_metadata``), the secret-header seal (README, Security)."""

    def __init__(
        self,
        max_message_bytes: int,
        *,
        keepalive_time_ms: int,
        keepalive_timeout_ms: int,
        security: EndpointSecurity | None = None,
        rotate_after_s: float = ROTATE_AFTER_S,
    ) -> None:
        self.security = security or EndpointSecurity()
        # The size policy's message limit, the same as the endpoint's (sdk start_server).
        self._max_message_bytes = max_message_bytes
        self._channels: dict[str, grpc.aio.Channel] = {}
        # The Invoke method of each channel: made once, not per attempt (a stub per attempt
        # built both methods' callables each time).
        self._invokes: dict[str, grpc.aio.StreamStreamMultiCallable] = {}
        self._keepalive_time_ms = keepalive_time_ms
        self._keepalive_timeout_ms = keepalive_timeout_ms
        # The open Attempts stream of each (uri, deployment id), and every stream's task (a
        # rotated one runs until its attempts end): owned here, awaited by close.
        self._shared: dict[tuple[str, str], SharedStream] = {}
        self._rotate_after_s = rotate_after_s
        self._stream_tasks: set[asyncio.Task[None]] = set()

    def get(self, uri: str) -> grpc.aio.Channel:
        channel = self._channels.get(uri)
        if channel is None:
            target, tls = endpoint_address(uri)
            channel = self.security.channel(
                target,
                tls,
                options=[
                    ("grpc.max_receive_message_length", self._max_message_bytes),
                    ("grpc.max_send_message_length", self._max_message_bytes),
                    # Reconnect quickly when an endpoint restarts (default backoff reaches 120 s).
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                    # Ping the endpoint while streams are open: a peer that stops answering (a
                    # stopped process, a vanished host) fails its streams after time + timeout
                    # instead of holding them forever. The SDK server accepts pings this often.
                    ("grpc.keepalive_time_ms", self._keepalive_time_ms),
                    ("grpc.keepalive_timeout_ms", self._keepalive_timeout_ms),
                    # grpc-core (1.85) closes the transport on an unanswered ping after this one,
                    # not after keepalive_timeout_ms (default a minute).
                    ("grpc.http2.ping_timeout_ms", self._keepalive_timeout_ms),
                    ("grpc.keepalive_permit_without_calls", 0),
                    ("grpc.http2.max_pings_without_data", 0),
                ],
            )
            self._channels[uri] = channel
        return channel

    def invoke(self, uri: str) -> grpc.aio.StreamStreamMultiCallable:
        """The ``Invoke`` method of ``uri``'s channel: an attempt's stream is a call of it."""
        invoke = self._invokes.get(uri)
        if invoke is None:
            invoke = endpoint_pb2_grpc.EndpointStub(self.get(uri)).Invoke
            self._invokes[uri] = invoke
        return invoke

    def shared(self, uri: str, deployment_id: str) -> SharedStream:
        """The ``Attempts`` stream new attempts to this deployment go to (opened on demand,
        again after it failed, a new one once it is ``rotate_after_s`` old)."""
        key = (uri, deployment_id)
        stream = self._shared.get(key)
        if stream is not None and stream.usable:
            if asyncio.get_running_loop().time() - stream.opened < self._rotate_after_s:
                return stream
            stream.drain()
        method = self.get(uri).stream_stream(
            ATTEMPTS_METHOD,
            request_serializer=None,  # frames are encoded by proto.frames
            response_deserializer=pb.SdkFrames.FromString,
        )
        metadata = self.security.attempts_metadata(deployment_id)
        stream = self._shared[key] = SharedStream(method, metadata, self._max_message_bytes, uri)
        self._stream_tasks.add(stream.task)
        stream.task.add_done_callback(self._stream_tasks.discard)
        return stream

    async def close(self) -> None:
        streams, self._shared = list(self._shared.values()), {}
        for stream in streams:
            stream.task.cancel()
        await asyncio.gather(*self._stream_tasks, return_exceptions=True)
        self._invokes = {}
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()
