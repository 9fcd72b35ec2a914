"""The runtime end to end (real LocalLog, RocksDB, gRPC and HTTP) against a scripted endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from runtime.config import NodeConfig
from runtime.console.app import STATIC
from runtime.node import Node
from sdk.ports import free_port
from tests.integration.runtime.scripted_endpoint import ScriptedEndpoint, start_scripted_endpoint
from tests.support.broker import unique_topic
from tests.support.teardown import bounded, start_node_with_endpoint


class Running:
    def __init__(self, node: Node, endpoint: ScriptedEndpoint, session: aiohttp.ClientSession):
        self.node = node
        self.endpoint = endpoint
        self.session = session
        self.ingress = f"http://{node.config.ingress_bind}"
        self.admin = f"http://{node.config.admin_bind}"


@pytest.fixture(params=["local", "kafka"])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    # Each stop is registered as soon as its server or node exists: a failure later on (the
    # node's start, the deployment's registration) or a stop that fails still stops the rest.
    async with AsyncExitStack() as teardown:
        server, endpoint, port = await start_scripted_endpoint()
        teardown.push_async_callback(
            bounded, "the scripted endpoint's gRPC server stop", lambda: server.stop(None)
        )
        kafka = (
            {
                "log": "kafka",
                "kafka_bootstrap": request.getfixturevalue("kafka_bootstrap"),
                "kafka_topic_prefix": unique_topic("node"),
                "kafka_fetch_max_wait_ms": 10,
            }
            if request.param == "kafka"
            else {}
        )
        config = NodeConfig(
            data_dir=tmp_path / "node",
            ingress_bind=f"127.0.0.1:{free_port()}",
            admin_bind=f"127.0.0.1:{free_port()}",
            partitions=4,
            **kafka,  # type: ignore[arg-type]
        )
        # After the node's stop (they run last first): it must have closed every stream it
        # opened, or the endpoint's stop has calls to abort (the state a hung run was left in).
        teardown.push_async_callback(
            bounded, "the Invoke streams' end after the node's stop", endpoint.streams_ended
        )
        node, session = await start_node_with_endpoint(teardown, config, port)
        yield Running(node, endpoint, session)


async def test_object_state_is_applied_once_per_call(running: Running) -> None:
    async def add(key: str) -> int:
        async with running.session.post(f"{running.ingress}/Counter/{key}/add", json=1) as r:
            assert r.status == 200, await r.text()
            assert r.headers["x-restate-id"].startswith("inv_")
            return int(await r.read())

    results = await asyncio.gather(*(add(f"k{i % 3}") for i in range(30)))
    assert sorted(results) == sorted([n for _ in range(3) for n in range(1, 11)])
    async with running.session.get(f"{running.admin}/services/Counter/state/k0") as r:
        assert (await r.json())["state"] == {"n": 10}


async def test_retry_replays_journaled_run_without_executing_it_again(running: Running) -> None:
    async with running.session.post(f"{running.ingress}/Steps/run", json=None) as r:
        assert r.status == 200, await r.text()
        assert await r.json() == "done"
    assert running.endpoint.run_executions == 1
    assert [(h, a) for h, a, _ in running.endpoint.attempts] == [("run", 1), ("run", 2)]


async def test_idempotency_key_executes_once(running: Running) -> None:
    async def add() -> tuple[str, bytes]:
        async with running.session.post(
            f"{running.ingress}/Counter/idem/add", json=5, headers={"idempotency-key": "once"}
        ) as r:
            assert r.status == 200
            return r.headers["x-restate-id"], await r.read()

    answers = await asyncio.gather(*(add() for _ in range(5)))
    answers.append(await add())
    assert len(set(answers)) == 1 and answers[0][1] == b"5"
    assert sum(1 for h, _, _ in running.endpoint.attempts if h == "add") == 1


async def test_call_across_partitions_delivers_the_callee_result(running: Running) -> None:
    async def call(key: str) -> int:
        async with running.session.post(f"{running.ingress}/Comms/call", json=key) as r:
            assert r.status == 200, await r.text()
            return int(await r.read())

    results = await asyncio.gather(*(call(f"c{i % 4}") for i in range(12)))
    assert sorted(results) == sorted([n for _ in range(4) for n in range(1, 4)])


async def test_sleep_suspends_and_resumes_by_replay(running: Running) -> None:
    started = asyncio.get_running_loop().time()
    async with running.session.post(f"{running.ingress}/Comms/nap", json=None) as r:
        assert r.status == 200, await r.text()
        assert await r.json() == "rested"
    assert asyncio.get_running_loop().time() - started >= 0.29
    naps = [a for h, a, _ in running.endpoint.attempts if h == "nap"]
    assert naps == [1, 2]  # suspended after the sleep, resumed as a new attempt


async def test_awakeable_resolved_over_http_resumes_the_waiter(running: Running) -> None:
    from partition_processor.ids import awakeable_id, invocation_id_for

    invocation_id = invocation_id_for("Comms", "wait", None, "w1", entropy=bytes(16))
    waiter = asyncio.create_task(
        running.session.post(
            f"{running.ingress}/Comms/wait", json=None, headers={"idempotency-key": "w1"}
        )
    )
    awakeable = awakeable_id(invocation_id, 1)
    url = f"{running.ingress}/restate/awakeables/{awakeable}/resolve"
    # Until the handler has created its awakeable (a deadline, not a count of tries: a loaded
    # machine may take seconds, and a waiter never resolved would hang the test).
    async with asyncio.timeout(60):
        while True:
            async with running.session.post(url, json={"ok": 1}) as r:
                if r.status == 202:
                    break
                assert r.status == 404, await r.text()
            await asyncio.sleep(0.05)
    response = await waiter
    assert response.status == 200 and await response.json() == {"ok": 1}
    response.release()
    async with running.session.post(url, json=2) as r:
        assert r.status in (404, 409)  # completed: the invocation ended, or the entry is done
        assert "code" in await r.json()
    bad = f"{running.ingress}/restate/awakeables/not-an-id/resolve"
    async with running.session.post(bad, json=1) as r:
        assert r.status == 400 and (await r.json())["code"] == 400


async def test_output_attach_kill_and_purge_over_http(running: Running) -> None:
    from partition_processor.ids import invocation_id_for

    invocation_id = invocation_id_for("Comms", "wait", None, "w2", entropy=bytes(16))
    async with running.session.post(
        f"{running.ingress}/Comms/wait/send", json=None, headers={"idempotency-key": "w2"}
    ) as r:
        assert r.status == 202 and (await r.json())["invocationId"] == invocation_id
    output = f"{running.ingress}/restate/invocation/{invocation_id}/output"
    async with asyncio.timeout(60):  # until it waits for its awakeable
        while True:
            async with running.session.get(output) as r:
                assert r.status == 470, await r.text()
            async with running.session.get(f"{running.admin}/invocations/{invocation_id}") as r:
                if (await r.json())["status"] == "suspended":
                    break
            await asyncio.sleep(0.05)
    by_key = f"{running.ingress}/restate/invocation/Comms/wait/w2/attach"
    attacher = asyncio.create_task(running.session.get(by_key))
    async with running.session.patch(f"{running.admin}/invocations/{invocation_id}/purge") as r:
        assert r.status == 409  # still running
    async with running.session.patch(f"{running.admin}/invocations/{invocation_id}/kill") as r:
        assert (r.status, await r.read()) == (200, b""), await r.text()  # as Restate 1.7
    attached = await attacher
    assert attached.status == 409 and (await attached.json())["message"] == "killed"
    attached.release()
    async with running.session.get(output) as r:
        assert r.status == 409
    async with running.session.patch(f"{running.admin}/invocations/{invocation_id}/purge") as r:
        assert (r.status, await r.read()) == (200, b"")
    async with running.session.get(output) as r:
        assert r.status == 404
    async with running.session.get(f"{running.admin}/invocations/inv_bad") as r:
        assert r.status == 400


async def test_the_nodes_stop_closes_the_stream_of_an_attempt_still_running(
    running: Running,
) -> None:
    async with running.session.post(f"{running.ingress}/Comms/hold/send", json=None) as r:
        assert r.status == 202, await r.text()
    async with asyncio.timeout(30):
        await running.endpoint.stream_opened()
    await running.node.stop()
    # Closed by the node, not aborted by the endpoint's stop (the fixture's, afterwards): a call
    # left open holds grpc.aio's completion queue when this process's last channel closes.
    async with asyncio.timeout(30):
        await running.endpoint.streams_ended()


async def test_snapshot_endpoints_say_when_no_repository_is_configured(running: Running) -> None:
    for method in ("GET", "POST"):
        async with running.session.request(method, f"{running.admin}/snapshots") as r:
            assert r.status == 409
            body = await r.json()
            assert body == {"code": 409, "message": "no snapshot repository is configured"}


async def test_console_static_files_and_names_too_long_for_the_file_system(
    running: Running,
) -> None:
    async with running.session.get(f"{running.admin}/ui/static/console.css") as r:
        assert r.status == 200 and r.content_type == "text/css"
        assert await r.read() == (STATIC / "console.css").read_bytes()
    # Found by the admin fuzz: a name longer than a file name may be was a 500.
    for name in ("k" * 256, "nope.css", "..%2Fapp.py"):
        async with running.session.get(f"{running.admin}/ui/static/{name}") as r:
            assert r.status == 404, (name, await r.text())
