"""Batched stream messages, seen from the runtime (a real node: LocalLog, RocksDB, gRPC, HTTP)
against a hand-written endpoint that batches or does not (proto/endpoint.proto, "Batches").

The endpoint sends the same script either as single messages or in batches: the journal, the
state and the result must be the same; what the runtime sends it must follow its manifest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc
from runtime.config import NodeConfig
from runtime.node import Node
from sdk.ports import free_port
from tests.support.teardown import bounded, start_node_with_endpoint


def _command(index: int, command: pb.JournalCommand) -> pb.SdkMessage:
    return pb.SdkMessage(command=pb.ProposedCommand(index=index, command=command))


def _set(index: int, key: str, value: bytes) -> pb.SdkMessage:
    return _command(index, pb.JournalCommand(set_state=pb.SetStateCommand(key=key, value=value)))


def _output(index: int, value: bytes) -> pb.SdkMessage:
    return _command(index, pb.JournalCommand(output=pb.OutputCommand(value=value)))


@dataclass
class Attempt:
    start: pb.Start
    entries: list[pb.JournalEntry]
    # The kinds of the gRPC messages the runtime sent, a batch as the list of its kinds.
    received: list[Any] = field(default_factory=list)


class BatchingEndpoint(endpoint_pb2_grpc.EndpointServicer):
    """``Obj/set``: set a, set b, set a again, output. ``Steps/retry``: set a, a step, then a
    retryable error on the first attempt; the second replays and outputs. ``Obj/nested``: a
    batch in a batch."""

    def __init__(self, batches: bool) -> None:
        self.batches = batches
        self.attempts: list[Attempt] = []

    async def Discover(self, request: pb.DiscoverRequest, context: object) -> pb.Manifest:
        retry = pb.RetryPolicy(initial_interval_ms=50, factor=1, max_interval_ms=50)
        return pb.Manifest(
            protocol_version=1,
            message_batches=self.batches,
            services=[
                pb.ServiceManifest(
                    name="Obj",
                    type=pb.SERVICE_TYPE_VIRTUAL_OBJECT,
                    handlers=[
                        pb.HandlerManifest(name="set", kind=pb.HANDLER_KIND_EXCLUSIVE),
                        pb.HandlerManifest(
                            name="nested", kind=pb.HANDLER_KIND_EXCLUSIVE, retry_policy=retry
                        ),
                    ],
                ),
                pb.ServiceManifest(
                    name="Steps",
                    type=pb.SERVICE_TYPE_SERVICE,
                    handlers=[pb.HandlerManifest(name="retry", retry_policy=retry)],
                ),
            ],
        )

    async def _next(
        self,
        requests: AsyncIterator[pb.RuntimeMessage],
        attempt: Attempt,
        pending: list[pb.RuntimeMessage],
    ) -> pb.RuntimeMessage:
        """The runtime's next message, out of its batch (recording how it came)."""
        if not pending:
            message = await anext(requests)
            if message.WhichOneof("kind") == "batch":
                assert self.batches, "a batch sent to an endpoint that did not declare them"
                inner = list(message.batch.messages)
                assert len(inner) >= 2, "a batch of one should have been sent as itself"
                attempt.received.append([m.WhichOneof("kind") for m in inner])
                pending.extend(inner)
            else:
                attempt.received.append(message.WhichOneof("kind"))
                pending.append(message)
        return pending.pop(0)

    async def Invoke(
        self, requests: AsyncIterator[pb.RuntimeMessage], context: object
    ) -> AsyncIterator[pb.SdkMessage]:
        requests = requests.__aiter__()
        pending: list[pb.RuntimeMessage] = []
        first = await self._next(requests, attempt := Attempt(pb.Start(), []), pending)
        attempt.start = first.start
        for _ in range(first.start.known_entries):
            attempt.entries.append((await self._next(requests, attempt, pending)).replay_entry)
        self.attempts.append(attempt)
        batched = self.batches and first.start.message_batches
        script: list[pb.SdkMessage]
        if first.start.handler == "set":
            script = [
                _set(1, "a", b"1"),
                _set(2, "b", b"2"),
                _set(3, "a", b"3"),
                _output(4, b'"ok"'),
            ]
        elif first.start.handler == "nested":
            if first.start.known_entries > 1:
                await asyncio.sleep(30)  # a retry: the test has seen what it wanted
                return
            inner = pb.SdkMessage(batch=pb.SdkBatch(messages=[pb.SdkMessage(end=pb.End())]))
            yield pb.SdkMessage(batch=pb.SdkBatch(messages=[_set(1, "a", b"1"), inner]))
            await asyncio.sleep(30)  # (the runtime ends the stream)
            return
        elif first.start.known_entries == 1:  # retry, first attempt
            run = pb.SdkMessage(run_completion=pb.ProposeRunCompletion(index=2, value=b"7"))
            step = [_set(1, "a", b"1"), _command(2, pb.JournalCommand(run=pb.RunCommand())), run]
            for message in _packed(step, batched):
                yield message
            notification = (await self._next(requests, attempt, pending)).notification
            assert notification.index == 2 and notification.completion.value == b"7"
            yield pb.SdkMessage(error=pb.Error(code=500, message="flaky", retryable=True))
            return
        else:
            assert attempt.entries[2].completion.value == b"7"
            script = [_output(3, b'"replayed"')]
        for message in _packed([*script, pb.SdkMessage(end=pb.End())], batched):
            yield message


def _packed(messages: list[pb.SdkMessage], batched: bool) -> list[pb.SdkMessage]:
    return [pb.SdkMessage(batch=pb.SdkBatch(messages=messages))] if batched else messages


@dataclass
class Running:
    node: Node
    endpoint: BatchingEndpoint
    session: aiohttp.ClientSession

    @property
    def ingress(self) -> str:
        return f"http://{self.node.config.ingress_bind}"

    @property
    def admin(self) -> str:
        return f"http://{self.node.config.admin_bind}"

    async def invocation(self, invocation_id: str) -> Any:
        async with self.session.get(f"{self.admin}/invocations/{invocation_id}") as response:
            assert response.status == 200, await response.text()
            return await response.json()


@pytest.fixture(params=[True, False], ids=["batching", "single"])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    # Each stop registered as soon as its server or node exists (tests/support/teardown.py).
    async with AsyncExitStack() as teardown:
        server = grpc.aio.server()
        endpoint = BatchingEndpoint(request.param)
        endpoint_pb2_grpc.add_EndpointServicer_to_server(endpoint, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        teardown.push_async_callback(
            bounded, "the batching endpoint's gRPC server stop", lambda: server.stop(None)
        )
        config = NodeConfig(
            data_dir=tmp_path / "node",
            ingress_bind=f"127.0.0.1:{free_port()}",
            admin_bind=f"127.0.0.1:{free_port()}",
            partitions=2,
        )
        node, session = await start_node_with_endpoint(teardown, config, port)
        yield Running(node, endpoint, session)


def node_admin(config: NodeConfig) -> str:
    return f"http://{config.admin_bind}"


async def test_a_batch_is_journaled_as_its_messages_one_by_one(running: Running) -> None:
    async with running.session.post(f"{running.ingress}/Obj/k/set", json=None) as response:
        assert response.status == 200, await response.text()
        assert await response.json() == "ok"
    # In order: the later write of "a" wins.
    async with running.session.get(f"{running.admin}/services/Obj/state/k") as response:
        assert (await response.json())["state"] == {"a": 3, "b": 2}
    [attempt] = running.endpoint.attempts
    assert attempt.start.message_batches  # this runtime reads batches, whatever the endpoint
    if running.endpoint.batches:
        assert attempt.received == [["start", "replay_entry"]]
    else:
        assert attempt.received == ["start", "replay_entry"]


async def test_a_retry_replays_the_journal_in_one_message_to_a_batching_endpoint(
    running: Running,
) -> None:
    async with running.session.post(f"{running.ingress}/Steps/retry", json=None) as response:
        assert response.status == 200, await response.text()
        assert await response.json() == "replayed"
    first, second = running.endpoint.attempts
    assert [e.command.WhichOneof("kind") for e in second.entries] == ["input", "set_state", "run"]
    if running.endpoint.batches:
        assert first.received == [["start", "replay_entry"], "notification"]
        assert second.received == [["start", "replay_entry", "replay_entry", "replay_entry"]]
    else:
        assert first.received == ["start", "replay_entry", "notification"]
        assert second.received == ["start", "replay_entry", "replay_entry", "replay_entry"]


@pytest.mark.parametrize("running", [True], indirect=True, ids=["batching"])
async def test_a_batch_inside_a_batch_is_a_protocol_error(running: Running) -> None:
    async with running.session.post(f"{running.ingress}/Obj/k/nested/send", json=None) as response:
        assert response.status == 202, await response.text()
        invocation_id = (await response.json())["invocationId"]

    async def failed() -> Any:
        while True:
            invocation = await running.invocation(invocation_id)
            if invocation["last_failure"] is not None:
                return invocation
            await asyncio.sleep(0.05)

    invocation = await asyncio.wait_for(failed(), 30)
    assert invocation["last_failure"]["code"] == 571
    assert "a batch must not hold another batch" in invocation["last_failure"]["message"]
    assert invocation["status"] != "completed"
    # What came before the nested batch in the same batch was proposed like any message; it
    # stays in the journal, and the retries replay it.
    assert [entry["command"] for entry in invocation["journal"]][:2] == ["input", "set_state('a')"]
