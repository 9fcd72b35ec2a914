"""DESIGN §11 / the Reliability issue, part 5b: a graceful stop is bounded, end to end.

SIGTERM answers every caller still waiting with 503 and its invocation id (the invocation goes
on), and the node exits 0 within ``--shutdown-timeout``: with 100 waiting callers, with the
broker gone, during a start that cannot finish, and in a cluster, where the other node takes
the partitions over at once.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Cluster, _register, stop_cluster
from tests.e2e.harness import Client, Endpoint, Node
from tests.e2e.test_supervision import APP, PARTITIONS, HealthWatch, _healthy
from tests.support.broker import TansuBroker, unique_topic

SHUTDOWN_TIMEOUT_S = 15


async def test_a_node_whose_claim_keeps_failing_is_unhealthy_and_stops_on_sigterm(
    log_kind: str, bootstrap: str | None, tmp_path: Path
) -> None:
    """It never becomes ready (its health says why), and SIGTERM still stops it in time."""
    node = Node(
        log_kind,
        tmp_path / "data",
        bootstrap,
        partitions=PARTITIONS,
        env={"CAIRN_FAULT_AT": "leader.announce:100000"},
    )
    client = Client(node)
    try:
        async with HealthWatch(node) as watch:
            node.process.spawn()
            reason = "claim restarting after InjectedFault"
            await client.wait_for(lambda: asyncio.sleep(0, watch.unhealthy("admin", reason)))
        assert not await _healthy(client)
        process = node.process.process
        assert process is not None
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT_S + 15)
        assert code == 0, node.process.output()[-5000:]
        assert time.monotonic() - signalled < SHUTDOWN_TIMEOUT_S
    finally:
        await client.close()
        print(node.process.output()[-10000:])
        node.kill()


async def _awakeables_published(client: Client, key: str, count: int) -> list[str]:
    async def published() -> list[str] | None:
        response = await client.call(f"/Recorder/{key}/entries")
        entries = response.json() if response.status == 200 else []
        if not entries:
            return None
        ids = entries[0]["entry"]
        return [ids] if isinstance(ids, str) else list(ids)

    ids: list[str] = await client.wait_for(published, timeout_s=60)
    assert len(ids) == count
    return ids


async def test_sigterm_answers_100_waiting_callers_with_their_ids_and_exits_in_time(
    cluster: Cluster, client: Client
) -> None:
    prefix = uuid.uuid4().hex[:8]
    keys = [f"{prefix}-{i}" for i in range(100)]
    # Even: one awakeable, suspended (no stream held); odd: two, with the stream still open.
    handlers = ["wait_for_one" if i % 2 == 0 else "wait_for_two" for i in range(100)]
    calls = [
        asyncio.create_task(client.call(f"/Awakeables/{handler}", key))
        for handler, key in zip(handlers, keys, strict=True)
    ]
    awakeables = await asyncio.gather(
        *(
            _awakeables_published(client, key, 1 if h == "wait_for_one" else 2)
            for h, key in zip(handlers, keys, strict=True)
        )
    )
    assert not any(call.done() for call in calls)  # all 100 are waiting for their result
    # And one more caller waiting on one of them by attaching (it knows the id already).
    listed = (await client.admin("GET", "/invocations")).json()["invocations"]
    attached_id = next(i["id"] for i in listed if i["target"] == "Awakeables/wait_for_two")
    attached = asyncio.create_task(client.attach(attached_id))
    await asyncio.sleep(2.0)  # a generous margin for the attach to reach the node and wait

    process = cluster.node.process.process
    assert process is not None
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    answered = asyncio.gather(*calls)
    code = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT_S + 15)
    elapsed = time.monotonic() - signalled
    responses = await answered
    assert code == 0, cluster.node.process.output()[-5000:]
    assert elapsed < SHUTDOWN_TIMEOUT_S, elapsed

    invocation_ids = []
    for response in responses:
        assert response.status == 503, response.body
        body = response.json()
        assert body["code"] == 503 and "shutting down" in body["message"]
        assert body["source"] == "ingress" == response.headers["x-restate-error-source"]
        assert response.headers["x-restate-id"] == body["invocationId"]
        assert "Retry-After" in response.headers
        invocation_ids.append(body["invocationId"])
    assert len(set(invocation_ids)) == 100
    response = await attached
    assert response.status == 503, response.body
    assert response.json()["invocationId"] == attached_id == response.headers["x-restate-id"]

    await asyncio.to_thread(cluster.node.start)
    expected: list[Any] = []
    for i, ids in enumerate(awakeables):
        values = [f"{i}-{n}" for n in range(len(ids))]
        for awakeable_id, value in zip(ids, values, strict=True):
            resolved = await client.call(f"/restate/awakeables/{awakeable_id}/resolve", value)
            assert resolved.status == 202, resolved.body
        expected.append(f"got {values[0]}" if len(ids) == 1 else values)
    results = await asyncio.gather(*(client.attach(i) for i in invocation_ids))
    for result, want in zip(results, expected, strict=True):
        assert result.status == 200, result.body
        assert result.json() == want


async def test_sigterm_is_bounded_even_when_the_broker_is_gone(tmp_path: Path) -> None:
    """Nothing in the stop may wait on a dead broker past ``--shutdown-timeout``; a waiting
    caller is answered first, with its invocation id."""
    broker = TansuBroker.start(tmp_path)
    node = Node(
        "kafka",
        tmp_path / "data",
        broker.bootstrap,
        partitions=PARTITIONS,
        extra=["--shutdown-timeout", "3"],
    )
    endpoint = Endpoint(APP, tmp_path)
    cluster = Cluster(node, endpoint)
    client = Client(node)
    try:
        endpoint.start()
        node.start()
        _register(node, endpoint)
        key = uuid.uuid4().hex[:10]
        waiting = asyncio.create_task(client.call("/Awakeables/wait_for_two", key))
        await _awakeables_published(client, key, 2)
        broker.stop()
        process = node.process.process
        assert process is not None
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        response = await asyncio.wait_for(waiting, 30)
        code = await asyncio.to_thread(process.wait, 30)
        elapsed = time.monotonic() - signalled
        assert response.status == 503 and response.json()["invocationId"], response.body
        # 3 s, and a generous margin for the interpreter's own exit on a loaded machine.
        assert elapsed < 3 + 5, elapsed
        output = node.process.output()
        assert code == 0 or (code == 1 and "did not stop within 3 s" in output), output[-3000:]
    finally:
        await client.close()
        stop_cluster(cluster)
        broker.stop()


async def test_sigterm_of_a_cluster_node_hands_its_waiting_callers_to_the_other_node(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """The stopping node answers its callers with their ids and leaves the group at once; the
    other node leads every partition and gives each caller its result by attach."""
    prefix = unique_topic("stop")
    flags = ["--cluster", "--cluster-session-timeout-ms", "3000"]
    a, b = (
        Node(
            "kafka",
            tmp_path / name,
            kafka_bootstrap,
            PARTITIONS,
            extra=[*flags, "--node-name", name],
            topic_prefix=prefix,
        )
        for name in ("a", "b")
    )
    endpoint = Endpoint(APP, tmp_path)
    via_a, via_b = Client(a), Client(b)
    try:
        endpoint.start()
        a.start()
        b.start()
        await via_a.register(endpoint)

        async def leaders() -> list[int]:
            led = [
                p
                for c in (via_a, via_b)
                for p in (await c.admin("GET", "/cluster")).json()["leading"]
            ]
            return sorted(led)

        await via_a.wait_for(lambda: _equals(leaders(), list(range(PARTITIONS))))
        keys = [uuid.uuid4().hex[:10] for _ in range(20)]
        calls = [asyncio.create_task(via_a.call("/Awakeables/wait_for_one", k)) for k in keys]
        awakeables = await asyncio.gather(*(_awakeables_published(via_a, k, 1) for k in keys))
        assert not any(call.done() for call in calls)

        process = a.process.process
        assert process is not None
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        answered = asyncio.gather(*calls)
        assert await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT_S + 15) == 0
        assert time.monotonic() - signalled < SHUTDOWN_TIMEOUT_S
        ids = []
        for response in await answered:
            assert response.status == 503, response.body
            ids.append(response.json()["invocationId"])

        async def b_leads_all() -> bool:
            leading = (await via_b.admin("GET", "/cluster")).json()["leading"]
            return sorted(leading) == list(range(PARTITIONS))

        await via_b.wait_for(b_leads_all)
        for i, [awakeable_id] in enumerate(awakeables):
            resolved = await via_b.call(f"/restate/awakeables/{awakeable_id}/resolve", f"v{i}")
            assert resolved.status == 202, resolved.body
        results = await asyncio.gather(*(via_b.attach(i) for i in ids))
        assert [r.json() for r in results] == [f"got v{i}" for i in range(len(keys))]
    finally:
        await via_a.close()
        await via_b.close()
        for process_ in (a, b, endpoint):
            print(process_.process.output()[-10000:])
            process_.stop()


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
