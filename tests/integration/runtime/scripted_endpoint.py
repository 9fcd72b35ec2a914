"""A hand-written SDK endpoint speaking proto/endpoint.proto: tests the runtime without the SDK.

``Counter/add`` (exclusive): get_state("n") → set_state("n", n+delta) → output(n+delta).
``Steps/run`` (service): run("one") → output("done"); fails its first attempt with a retryable
error after journaling the run, to exercise retry + replay.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc

from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc


class ScriptedEndpoint(endpoint_pb2_grpc.EndpointServicer):
    def __init__(self) -> None:
        self.attempts: list[tuple[str, int, int]] = []  # (handler, attempt, known entries)
        self.run_executions = 0

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
                yield pb.SdkMessage(
                    run_completion=pb.ProposeRunCompletion(index=1, value=b'"ran"')
                )
                notification = (await iterator.__anext__()).notification
                assert notification.index == 1
                yield pb.SdkMessage(error=pb.Error(code=500, message="flaky", retryable=True))
                return
            assert entries[1].completion.value == b'"ran"'
            yield _command(2, pb.JournalCommand(output=pb.OutputCommand(value=b'"done"')))
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
