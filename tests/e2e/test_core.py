"""Issue 2 end to end: the core engine over HTTP, on the local log and on Kafka."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.apps.effects import open_gate
from tests.e2e.conftest import Cluster
from tests.e2e.harness import Client

APP = "tests.e2e.apps.core:app"


async def test_greeter(shared: Cluster, client: Client) -> None:
    response = await client.call("/Greeter/greet", "Ada")
    assert response.status == 200, response.body
    assert response.json() == "Hello, Ada!"
    assert response.headers["x-restate-id"].startswith("inv_")
    # Both processes serve on uvloop by default (issue 10: --event-loop auto, uvloop installed).
    assert "event loop uvloop" in shared.node.process.output()
    assert "event loop uvloop" in shared.endpoint.process.output()


# ---------------------------------------------------------------- durable steps


async def _entry_completed(client: Client, invocation_id: str, index: int) -> bool:
    journal = (await client.invocation(invocation_id))["journal"]
    return len(journal) > index and journal[index]["completed"]


@pytest.mark.parametrize("victim", ["endpoint", "node"])
async def test_durable_steps_survive_kill_9(
    cluster: Cluster, client: Client, tmp_path: Path, victim: str
) -> None:
    path = tmp_path / "lines.txt"
    invocation_id = await client.send("/Steps/three_steps", str(path))
    # Step two's result is in the log (journal entry 2 completed): now kill -9 mid-invocation.
    await client.wait_for(lambda: _entry_completed(client, invocation_id, 2))
    assert path.read_text().splitlines() == ["one", "two"]
    if victim == "endpoint":
        cluster.endpoint.kill()
        open_gate(path)
        await cluster.endpoint.restart()
    else:
        cluster.node.kill()
        open_gate(path)
        await cluster.node.restart()
    response = await client.attach(invocation_id)
    assert response.status == 200, response.body
    assert response.json() == ["one", "two", "three"]
    assert path.read_text().splitlines() == ["one", "two", "three"]


# ---------------------------------------------------------------- retries


async def test_a_step_failing_twice_is_retried_until_it_succeeds(
    shared: Cluster, client: Client
) -> None:
    key = uuid.uuid4().hex
    response = await client.call("/Steps/flaky", key)
    assert response.status == 200, response.body
    assert response.json() == "succeeded after 3 calls"
    status = await client.invocation(response.headers["x-restate-id"])
    assert status["status"] == "completed"
    assert status["last_failure"]["code"] == 500
    assert "transient failure 2" in status["last_failure"]["message"]


async def test_a_step_retried_in_place_with_run_options(shared: Cluster, client: Client) -> None:
    response = await client.call("/Steps/flaky_in_place", uuid.uuid4().hex)
    assert response.status == 200, response.body
    assert response.json() == "succeeded after 3 calls"


async def test_terminal_error_reaches_the_caller_with_its_code(
    shared: Cluster, client: Client
) -> None:
    response = await client.call("/Steps/teapot")
    assert response.status == 418
    assert response.json() == {"code": 418, "message": "I'm a teapot", "source": "invocation"}
    status = await client.invocation(response.headers["x-restate-id"])
    assert status["attempt"] == 1  # not retried


async def test_deterministic_helpers_are_the_same_on_retry(shared: Cluster, client: Client) -> None:
    response = await client.call("/Steps/determinism")
    assert response.status == 200, response.body
    body = response.json()
    assert body["now"] == body["first"]
    assert body["now"]["request_id"] == response.headers["x-restate-id"]


async def test_journal_mismatch_is_reported_not_hidden(shared: Cluster, client: Client) -> None:
    invocation_id = await client.send("/Steps/flip", uuid.uuid4().hex)

    async def mismatch() -> dict[str, object] | None:
        status = await client.invocation(invocation_id)
        failure = status["last_failure"]
        return status if failure and failure["code"] == 570 else None

    status = await client.wait_for(mismatch)
    message = status["last_failure"]["message"]
    assert "journal mismatch at entry 1" in message
    assert "run('b')" in message and "run('a')" in message
    assert status["status"] != "completed"  # never a silently wrong result
    output = await client.call(f"/restate/invocation/{invocation_id}/output", method="GET")
    assert output.status == 470
    kill = await client.admin("PATCH", f"/invocations/{invocation_id}/kill")
    assert kill.status == 200


# ---------------------------------------------------------------- virtual objects


async def test_counter_2000_concurrent_adds_over_20_keys(shared: Cluster, client: Client) -> None:
    prefix = uuid.uuid4().hex[:8]
    keys = [f"{prefix}-{i}" for i in range(20)]
    semaphore = asyncio.Semaphore(200)

    async def add(key: str) -> int:
        async with semaphore:
            response = await client.call(f"/Counter/{key}/add", 1)
            assert response.status == 200, response.body
            result: int = response.json()
            return result

    results = await asyncio.gather(*(add(keys[i % 20]) for i in range(2000)))
    for key in keys:
        response = await client.call(f"/Counter/{key}/get")
        assert response.json() == 100
    # Single writer per key: every add saw a distinct count, 1..100 per key.
    assert sorted(results) == sorted(list(range(1, 101)) * 20)


async def test_shared_handler_runs_while_exclusive_one_is_blocked(
    shared: Cluster, client: Client
) -> None:
    key = uuid.uuid4().hex
    assert (await client.call(f"/Counter/{key}/add", 5)).status == 200
    holder = await client.send(f"/Counter/{key}/hold", None)

    async def pending_awakeable() -> str | None:
        response = await client.admin("GET", f"/services/Counter/state/{key}")
        value: str | None = response.json()["state"].get("pending")
        return value

    awakeable_id = await client.wait_for(pending_awakeable)
    queued = await client.send(f"/Counter/{key}/add", 1)
    # The exclusive add waits behind the holder; the shared get does not.
    get = await client.call(f"/Counter/{key}/get")
    assert get.status == 200 and get.json() == 5
    assert (await client.invocation(queued))["status"] == "inboxed"
    resolved = await client.call(f"/restate/awakeables/{awakeable_id}/resolve", "released")
    assert resolved.status == 202, resolved.body
    assert (await client.attach(holder)).json() == "released"
    assert (await client.attach(queued)).json() == 6


async def test_clear_and_clear_all(shared: Cluster, client: Client) -> None:
    key = uuid.uuid4().hex
    assert (await client.call(f"/Counter/{key}/put", {"a": 1, "b": "two", "c": [3]})).status == 200
    assert (await client.call(f"/Counter/{key}/state")).json() == {"a": 1, "b": "two", "c": [3]}
    assert (await client.call(f"/Counter/{key}/clear", "b")).status == 200
    assert (await client.call(f"/Counter/{key}/state")).json() == {"a": 1, "c": [3]}
    assert (await client.call(f"/Counter/{key}/clear_all")).status == 200
    assert (await client.call(f"/Counter/{key}/state")).json() == {}


async def test_state_survives_a_node_restart(cluster: Cluster, client: Client) -> None:
    for delta in (1, 2, 3):
        assert (await client.call("/Counter/persistent/add", delta)).status == 200
    await cluster.node.restart()
    assert (await client.call("/Counter/persistent/get")).json() == 6
    assert (await client.call("/Counter/persistent/add", 4)).json() == 10


# ---------------------------------------------------------------- idempotency


async def test_same_idempotency_key_executes_once(shared: Cluster, client: Client) -> None:
    key = uuid.uuid4().hex
    headers = {"idempotency-key": f"sequential-{key}"}
    sequential = [await client.call(f"/Counter/{key}/add", 7, headers=headers) for _ in range(5)]
    headers = {"idempotency-key": f"concurrent-{key}"}
    concurrent = await asyncio.gather(
        *(client.call(f"/Counter/{key}/add", 7, headers=headers) for _ in range(5))
    )
    for responses, expected in ((sequential, 7), (concurrent, 14)):
        assert {r.status for r in responses} == {200}
        assert {r.body for r in responses} == {str(expected).encode()}
        assert len({r.headers["x-restate-id"] for r in responses}) == 1
    assert (await client.call(f"/Counter/{key}/get")).json() == 14


async def test_idempotency_across_a_node_restart(cluster: Cluster, client: Client) -> None:
    headers = {"idempotency-key": "across-restart"}
    first = await client.call("/Counter/idem/add", 3, headers=headers)
    assert first.status == 200
    await cluster.node.restart()
    for _ in range(5):
        again = await client.call("/Counter/idem/add", 3, headers=headers)
        assert (again.status, again.body) == (200, first.body)
        assert again.headers["x-restate-id"] == first.headers["x-restate-id"]
    assert (await client.call("/Counter/idem/get")).json() == 3


async def test_crash_under_load_loses_and_duplicates_nothing(
    cluster: Cluster, client: Client
) -> None:
    keys = [f"load-{i}" for i in range(10)]
    requests = [(keys[i % len(keys)], f"inc-{i}") for i in range(1000)]
    semaphore = asyncio.Semaphore(100)
    killed = asyncio.Event()

    async def increment(key: str, idempotency_key: str) -> None:
        headers = {"idempotency-key": idempotency_key}
        async with semaphore:
            for _ in range(600):  # retried like a client would, until it gets an answer
                try:
                    response = await client.call(f"/Counter/{key}/add", 1, headers=headers)
                    if response.status == 200:
                        return
                except (TimeoutError, aiohttp.ClientError):
                    pass
                await asyncio.sleep(0.1)
            raise AssertionError(f"{idempotency_key} never succeeded")

    async def kill_mid_load() -> None:
        await client.wait_for(
            lambda: _completed_count(client, len(requests) // 4), timeout_s=120, interval_s=0.2
        )
        await cluster.node.restart()
        killed.set()

    await asyncio.gather(kill_mid_load(), *(increment(k, i) for k, i in requests))
    assert killed.is_set()
    for key in keys:
        response = await client.call(f"/Counter/{key}/get")
        assert response.json() == 100, key


async def _completed_count(client: Client, at_least: int) -> bool:
    response = await client.admin("GET", "/invocations?status=completed&limit=1000")  # one page
    return len(response.json()["invocations"]) >= at_least


# ---------------------------------------------------------------- bad input


async def test_bad_input_gets_clear_errors_and_the_node_keeps_serving(
    shared: Cluster, client: Client
) -> None:
    cases = [
        ("/Greeter/greet", b'{"name": ', 400),
        ("/Nope/greet", b'"x"', 404),
        ("/Greeter/nope", b'"x"', 404),
        ("/Counter/add", b"1", 400),
        ("/Greeter/greet", b'"' + b"x" * (11 * 1024 * 1024) + b'"', 413),
    ]
    for path, body, status in cases:
        response = await client.call(path, raw=body, headers={"content-type": "application/json"})
        assert response.status == status, (path, response.body[:200])
        error = response.json()
        assert error["code"] == status and error["message"], error
    typed = await client.call("/Counter/typed/add", "not a number")
    assert typed.status == 400, typed.body
    assert "int" in typed.json()["message"]
    response = await client.call("/Greeter/greet", "still here")
    assert (response.status, response.json()) == (200, "Hello, still here!")
