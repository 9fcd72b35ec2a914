"""A hand-written SDK endpoint speaking proto/endpoint.proto: tests the runtime without the SDK.

``Counter/add`` (exclusive): get_state("n") → set_state("n", n+delta) → output(n+delta).
``Steps/run`` (service): run("one") → output("done"); fails its first attempt with a retryable
error after journaling the run, to exercise retry + replay.
``Comms/call`` (service): call Counter/{arg}/add(1) → output the callee's result.
``Comms/nap`` (service): sleep 300 ms, suspend; resumed by replay → output "rested".
``Comms/wait`` (service): awakeable, suspend; resumed when resolved → output its value.
``Comms/hold`` (service): keeps its stream open, sending nothing, until the runtime closes it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

import grpc

from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc


class ScriptedEndpoint(endpoint_pb2_grpc.EndpointServicer):
    def __init__(self) -> None:
        self.attempts: list[tuple[str, int, int]] = []  # (handler, attempt, known entries)
        self.run_executions = 0
        # Invoke streams whose handler has not ended (a runtime that went away without closing
        # its stream leaves one here until the server's stop aborts it).
        self.open_streams = 0
        self._streams_changed = asyncio.Event()

    async def streams_ended(self) -> None:
        """Return once no Invoke stream is open (the caller bounds the wait)."""
        await self._streams_until(lambda open_streams: open_streams == 0)

    async def stream_opened(self) -> None:
        """Return once an Invoke stream is open (the caller bounds the wait)."""
        await self._streams_until(lambda open_streams: open_streams > 0)

    async def _streams_until(self, condition: Callable[[int], bool]) -> None:
        while not condition(self.open_streams):
            self._streams_changed.clear()
            await self._streams_changed.wait()

    def _count_stream(self, change: int) -> None:
        self.open_streams += change
        self._streams_changed.set()

    async def Discover(self, request: pb.DiscoverRequest, context: object) -> pb.Manifest:
        return pb.Manifest(
            protocol_version=1,
            services=[
                pb.ServiceManifest(
                    name="Counter",
                    type=pb.SERVICE_TYPE_VIRTUAL_OBJECT,
                    handlers=[pb.HandlerManifest(name="add", kind=pb.HANDLER_KIND_EXCLUSIVE)],
                ),
                pb.ServiceManifest(
                    name="Comms",
                    type=pb.SERVICE_TYPE_SERVICE,
                    handlers=[
                        pb.HandlerManifest(name="call"),
                        pb.HandlerManifest(name="nap"),
                        pb.HandlerManifest(name="wait"),
                        pb.HandlerManifest(name="hold"),
                    ],
                ),
                pb.ServiceManifest(
                    name="Steps",
                    type=pb.SERVICE_TYPE_SERVICE,
                    handlers=[
                        pb.HandlerManifest(
                            name="run",
                            retry_policy=pb.RetryPolicy(
                                initial_interval_ms=50, factor=1, max_interval_ms=50
                            ),
                        )
                    ],
                ),
            ],
        )

    async def Invoke(
        self, requests: AsyncIterator[pb.RuntimeMessage], context: object
    ) -> AsyncIterator[pb.SdkMessage]:
        self._count_stream(1)
        try:
            async for message in self._attempt(requests):
                yield message
        finally:
            self._count_stream(-1)

    async def _attempt(
        self, requests: AsyncIterator[pb.RuntimeMessage]
    ) -> AsyncIterator[pb.SdkMessage]:
        iterator = requests.__aiter__()
        start = (await iterator.__anext__()).start
        entries = [(await iterator.__anext__()).replay_entry for _ in range(start.known_entries)]
        self.attempts.append((start.handler, start.attempt, start.known_entries))
        argument = json.loads(entries[0].command.input.value or b"null")
        if start.handler == "add":
            yield _command(1, pb.JournalCommand(get_state=pb.GetStateCommand(key="n")))
            notification = (await iterator.__anext__()).notification
            assert notification.index == 1
            completion = notification.completion
            current = int(completion.value) if completion.HasField("value") else 0
            new = current + int(argument)
            value = str(new).encode()
            yield _command(2, pb.JournalCommand(set_state=pb.SetStateCommand(key="n", value=value)))
            yield _command(3, pb.JournalCommand(output=pb.OutputCommand(value=value)))
            yield pb.SdkMessage(end=pb.End())
        elif start.handler == "run":
            if start.known_entries == 1:
                self.run_executions += 1
                yield _command(1, pb.JournalCommand(run=pb.RunCommand(name="one")))
                yield pb.SdkMessage(run_completion=pb.ProposeRunCompletion(index=1, value=b'"ran"'))
                notification = (await iterator.__anext__()).notification
                assert notification.index == 1
                yield pb.SdkMessage(error=pb.Error(code=500, message="flaky", retryable=True))
                return
            assert entries[1].completion.value == b'"ran"'
            yield _command(2, pb.JournalCommand(output=pb.OutputCommand(value=b'"done"')))
            yield pb.SdkMessage(end=pb.End())
        elif start.handler == "call":
            target = pb.CallTarget(service="Counter", handler="add", key=str(argument))
            if start.known_entries == 1:
                call = pb.CallCommand(target=target, argument=b"1")
                yield _command(1, pb.JournalCommand(call=call))
                first = (await iterator.__anext__()).notification
                assert first.index == 1 and first.invocation_id.startswith("inv_")
                result = (await iterator.__anext__()).notification
                assert result.index == 1 and result.completion_seq == 1
                value = result.completion.value
            else:  # replay: the journaled result, no second call
                value = entries[1].completion.value
            yield _command(2, pb.JournalCommand(output=pb.OutputCommand(value=value)))
            yield pb.SdkMessage(end=pb.End())
        elif start.handler == "hold":
            await iterator.__anext__()  # (nothing comes: the runtime cancels the stream)
        elif start.handler in ("nap", "wait"):
            if start.known_entries == 1:
                if start.handler == "nap":
                    command = pb.JournalCommand(
                        sleep=pb.SleepCommand(wake_up_ms=int(time.time() * 1000) + 300)
                    )
                else:
                    command = pb.JournalCommand(awakeable=pb.AwakeableCommand())
                yield _command(1, command)
                yield pb.SdkMessage(suspension=pb.Suspension(awaiting_entries=[1]))
                return
            assert entries[1].HasField("completion")
            completion = entries[1].completion
            value = b'"rested"' if start.handler == "nap" else completion.value
            yield _command(2, pb.JournalCommand(output=pb.OutputCommand(value=value)))
            yield pb.SdkMessage(end=pb.End())


def _command(index: int, command: pb.JournalCommand) -> pb.SdkMessage:
    return pb.SdkMessage(command=pb.ProposedCommand(index=index, command=command))


async def start_scripted_endpoint() -> tuple[grpc.aio.Server, ScriptedEndpoint, int]:
    server = grpc.aio.server()
    endpoint = ScriptedEndpoint()
    endpoint_pb2_grpc.add_EndpointServicer_to_server(endpoint, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, endpoint, port
