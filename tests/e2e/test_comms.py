"""Issue 3 end to end: calls, sends, delayed sends, durable timers, combinators, awakeables and
suspension, over HTTP on the local log and on Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from partition_processor.ids import parse_partition_key, partition_of
from tests.e2e.apps.effects import at_gate, open_gate
from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.e2e.harness import Client

APP = "tests.e2e.apps.comms:app"


def _key() -> str:
    return uuid.uuid4().hex[:12]


async def _recorded(client: Client, key: str) -> list[Any]:
    response = await client.call(f"/Recorder/{key}/entries")
    assert response.status == 200, response.body
    entries: list[Any] = response.json()
    return entries


async def _wait_recorded(client: Client, key: str, count: int, timeout_s: float = 30) -> list[Any]:
    async def enough() -> list[Any] | None:
        entries = await _recorded(client, key)
        assert len(entries) <= count, entries  # never more than sent
        return entries if len(entries) == count else None

    result: list[Any] = await client.wait_for(enough, timeout_s=timeout_s)
    return result


async def _status(client: Client, invocation_id: str) -> dict[str, Any]:
    status: dict[str, Any] = await client.invocation(invocation_id)
    return status


# ---------------------------------------------------------------- the seed's snippets


async def test_seed_service_calls(shared: Cluster, client: Client) -> None:
    user_id, order_id = _key(), _key()
    response = await client.call(f"/UserAccount/{user_id}/set_profile", {"name": "Ada"})
    assert response.status == 200, response.body
    order = {"userId": user_id, "orderId": order_id, "items": ["book"]}
    response = await client.call("/Orders/process", order)
    assert response.status == 200, response.body
    assert response.json() == {
        "validation": True,
        "profile": {"name": "Ada"},
        "result": {"orderId": order_id, "status": "processed", "items": ["book"]},
    }
    # The workflow submitted by the call is attachable like any other.
    output = await client.call(f"/restate/workflow/OrderWorkflow/{order_id}/output", method="GET")
    assert output.status == 200, output.body
    assert output.json()["status"] == "processed"


async def test_seed_sending_messages(shared: Cluster, client: Client) -> None:
    user_id = _key()
    response = await client.call("/Signup/sign_up", user_id)
    assert response.status == 200, response.body
    entries = await _wait_recorded(client, user_id, 3)
    delivered = sorted(str(e["entry"]) for e in entries)
    assert delivered == sorted(
        str(e) for e in [{"email": "Welcome!"}, {"event": "user_signup"}, {"cart": "emptied"}]
    )


async def test_seed_delayed_message(shared: Cluster, client: Client) -> None:
    user_id = _key()
    request = {"userId": user_id, "message": "pay the bill", "delay_ms": 1500}
    response = await client.call("/Signup/remind", request)
    assert response.status == 200, response.body
    sent_at = response.json()
    [entry] = await _wait_recorded(client, user_id, 1)
    assert entry["entry"] == {"reminder": "pay the bill"}
    assert entry["at"] - sent_at >= 1.5  # not before its time
    assert entry["at"] - sent_at < 1.5 + 3.0  # and not much after


async def test_ingress_send_with_delay(shared: Cluster, client: Client) -> None:
    key = _key()
    before = time.time()
    for delay, body in [("1s", "humantime"), ("PT1S", "iso-8601"), ("", "now")]:
        response = await client.call(f"/Recorder/{key}/record/send?delay={delay}", body)
        assert response.status == 202, response.body
        assert response.json()["status"] == "Accepted"
        assert response.json()["invocationId"] == response.headers["x-restate-id"]
    entries = await _wait_recorded(client, key, 3)
    at = {e["entry"]: e["at"] - before for e in entries}
    assert at["now"] < 1.0 <= at["humantime"]
    assert at["iso-8601"] >= 1.0
    bad = await client.call(f"/Recorder/{key}/record/send?delay=soon", "x")
    assert bad.status == 400 and bad.json()["code"] == 400
    assert "delay" in bad.json()["message"]


async def test_generic_call_and_send_by_name(shared: Cluster, client: Client) -> None:
    key = _key()
    response = await client.call("/Squares/generic", {"n": 7, "recorder_key": key})
    assert response.status == 200, response.body
    assert response.json() == 49
    [entry] = await _wait_recorded(client, key, 1)
    assert entry["entry"] == 49


# ---------------------------------------------------------------- timeout pattern


async def _timeout_race(client: Client, tmp_path: Path, processing_ms: int, timeout_ms: int) -> Any:
    order = {
        "orderId": _key(),
        "items": ["lamp"],
        "processing_ms": processing_ms,
        "timeout_ms": timeout_ms,
        "marker": str(tmp_path / f"marker-{_key()}"),
    }
    response = await client.call("/Orders/process_with_timeout", order)
    assert response.status == 200, response.body
    # The first attempt failed after the race; the result is the replayed attempt's.
    status = await _status(client, response.headers["x-restate-id"])
    assert status["attempt"] >= 2
    return response.json(), order


async def test_timeout_pattern_takes_the_result_branch_also_on_replay(
    shared: Cluster, client: Client, tmp_path: Path
) -> None:
    # The call wins; when the attempt is replayed 1.5 s later the 1 s timer has fired too.
    decided, order = await _timeout_race(client, tmp_path, processing_ms=0, timeout_ms=1000)
    assert decided["branch"] == "result"
    assert decided["result"] == {
        "orderId": order["orderId"],
        "status": "processed",
        "items": ["lamp"],
    }


async def test_timeout_pattern_takes_the_timeout_branch_also_on_replay(
    shared: Cluster, client: Client, tmp_path: Path
) -> None:
    # The timer wins; on replay the (slower) workflow has completed too, the timeout still wins.
    decided, order = await _timeout_race(client, tmp_path, processing_ms=800, timeout_ms=100)
    assert decided == {"branch": "timeout", "callee": decided["callee"]}
    callee = await client.attach(decided["callee"])
    assert callee.status == 200 and callee.json()["status"] == "processed"


# ---------------------------------------------------------------- combinators and fan-out


async def test_fan_out_of_200_calls_across_partitions(shared: Cluster, client: Client) -> None:
    response = await client.call("/Squares/fan_out", 200)
    assert response.status == 200, response.body
    body = response.json()
    assert body["sum"] == sum(i * i for i in range(200))
    assert len(set(body["callees"])) == 200
    partitions = {partition_of(parse_partition_key(c), 4) for c in body["callees"]}
    assert partitions == {0, 1, 2, 3}


async def test_as_completed_and_wait_completed(shared: Cluster, client: Client) -> None:
    response = await client.call("/Timers/completion_order", [600, 100, 350])
    assert response.status == 200, response.body
    assert response.json() == [100, 350, 600]
    response = await client.call("/Timers/first_of", 50)
    assert response.status == 200, response.body
    assert response.json() == {"done": 1, "pending": 1, "sleep_done": 1}


async def test_call_results_are_journaled_not_called_again(
    shared: Cluster, client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "effects.txt"
    response = await client.call("/Effects/call_then_fail_once", str(path))
    assert response.status == 200, response.body
    assert response.json() == ["OK", "422: bad refused"]
    assert (await _status(client, response.headers["x-restate-id"]))["attempt"] >= 2
    assert path.read_text().splitlines() == ["ok", "bad"]  # each callee ran once


# ---------------------------------------------------------------- crashes


async def test_call_chain_with_kill_9_of_the_node_records_each_effect_once(
    cluster: Cluster, client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "chain.txt"
    invocation_id = await client.send("/Chain/chain_a", str(path))

    async def reached_c() -> bool:  # "C" written, and its step's result in the log
        return at_gate(path)

    await client.wait_for(reached_c)
    assert path.read_text().splitlines() == ["A", "B", "C"]
    cluster.node.kill()
    open_gate(path)
    await cluster.node.restart()
    response = await client.attach(invocation_id)
    assert response.status == 200, response.body
    assert response.json() == ["A", "B", "C"]
    assert path.read_text().splitlines() == ["A", "B", "C", "C done"]


async def test_outbox_messages_delivered_once_across_a_node_kill(
    cluster: Cluster, client: Client
) -> None:
    prefix, count, keys = _key(), 300, 10
    await client.send("/Chain/burst", {"count": count, "keys": keys, "prefix": prefix})

    async def first_delivered() -> bool:
        return any([await _recorded(client, f"{prefix}-{k}") for k in range(keys)])

    await client.wait_for(first_delivered, interval_s=0.01)
    cluster.node.kill()  # while the outbox is being shipped
    await cluster.node.restart()
    for k in range(keys):
        entries = await _wait_recorded(client, f"{prefix}-{k}", count // keys)
        assert sorted(e["entry"] for e in entries) == list(range(k, count, keys))


@pytest.mark.parametrize("crash_at", ["outbox.before_ship", "outbox.after_ship"])
async def test_a_call_is_delivered_once_when_the_node_dies_around_shipping(
    log_kind: str, bootstrap: str | None, tmp_path: Path, crash_at: str
) -> None:
    """The node exits right before (after) the caller's outbox row reaches the callee's
    partition: on restart it is shipped (shipped again and deduplicated)."""
    cluster = start_cluster(APP, log_kind, tmp_path, bootstrap, env={"CAIRN_CRASH_AT": crash_at})
    client = Client(cluster.node)
    try:
        path = tmp_path / "callee.txt"
        invocation_id = await client.send("/Effects/call_once", str(path))
        process = cluster.node.process.process
        assert process is not None
        assert await asyncio.to_thread(process.wait, 30) == 137  # died at the crash point
        cluster.node.process.env = {**cluster.node.process.env, "CAIRN_CRASH_AT": ""}
        await asyncio.to_thread(cluster.node.start)
        response = await client.attach(invocation_id)
        assert response.status == 200, response.body
        assert response.json() == "CALLEE"
        assert path.read_text().splitlines() == ["callee"]
    finally:
        await client.close()
        stop_cluster(cluster)


async def test_delayed_send_fires_after_a_restart_at_its_time(
    cluster: Cluster, client: Client
) -> None:
    user_id = _key()
    request = {"userId": user_id, "message": "later", "delay_ms": 2000}
    response = await client.call("/Signup/remind", request)
    assert response.status == 200, response.body
    sent_at = response.json()
    cluster.node.kill()
    await asyncio.sleep(0.5)
    await cluster.node.restart()
    restarted = time.time()
    [entry] = await _wait_recorded(client, user_id, 1)
    # At its time, or at once after the restart when the restart itself took longer than that.
    assert entry["at"] - sent_at >= 2.0
    assert entry["at"] < max(sent_at + 2.0, restarted) + 2.5


async def test_sleep_interrupted_by_kill_9_ends_on_time(cluster: Cluster, client: Client) -> None:
    invocation_id = await client.send("/Timers/sleep_for", 3000)

    async def sleeping() -> bool:
        journal = (await _status(client, invocation_id))["journal"]
        return any(entry["command"] == "sleep" for entry in journal)

    await client.wait_for(sleeping)
    cluster.node.kill()
    await asyncio.sleep(0.5)
    await cluster.node.restart()
    restarted = time.time()
    response = await client.attach(invocation_id)
    assert response.status == 200, response.body
    started, woke = response.json()
    # ~3 s after it began (or at once when the restart itself took longer than that)...
    assert woke - started >= 3.0
    assert woke < max(started + 3.0, restarted) + 1.5
    assert woke - restarted < 3.0  # ...not 3 s after the restart


# ---------------------------------------------------------------- awakeables and suspension


async def _published_awakeables(client: Client, key: str) -> Any:
    [entry] = await _wait_recorded(client, key, 1)
    return entry["entry"]


async def _waiting_on_an_awakeable(client: Client) -> tuple[str, str]:
    """A ``wait_for_one`` invocation and the awakeable it waits on."""
    key = _key()
    invocation_id = await client.send("/Awakeables/wait_for_one", key)
    return invocation_id, await _published_awakeables(client, key)


async def _resolve(client: Client, awakeable_id: str, value: Any) -> int:
    response = await client.call(f"/restate/awakeables/{awakeable_id}/resolve", value)
    return response.status


async def test_awakeable_resolved_over_http_after_suspension(
    shared: Cluster, client: Client
) -> None:
    invocation_id, awakeable_id = await _waiting_on_an_awakeable(client)

    async def suspended() -> bool:
        return (await _status(client, invocation_id))["status"] == "suspended"

    await client.wait_for(suspended)  # inactivity timeout of 100 ms: the stream is closed
    assert await _resolve(client, awakeable_id, "hello") == 202
    response = await client.attach(invocation_id)
    assert response.status == 200, response.body
    assert response.json() == "got hello"
    status = await _status(client, invocation_id)
    assert status["status"] == "completed" and status["attempt"] >= 2  # resumed by replay


async def test_awakeable_resolved_from_another_handler(shared: Cluster, client: Client) -> None:
    invocation_id, awakeable_id = await _waiting_on_an_awakeable(client)
    response = await client.call("/Awakeables/resolve", {"id": awakeable_id, "value": "a note"})
    assert response.status == 200, response.body
    response = await client.attach(invocation_id)
    assert response.status == 200 and response.json() == "got a note"


async def test_rejected_awakeable_raises_a_terminal_error_in_the_waiter(
    shared: Cluster, client: Client
) -> None:
    over_http, awakeable_id = await _waiting_on_an_awakeable(client)
    response = await client.call(f"/restate/awakeables/{awakeable_id}/reject", "no way")
    assert response.status == 202, response.body
    response = await client.attach(over_http)
    assert response.status == 500
    assert response.json() == {"code": 500, "message": "no way", "source": "invocation"}

    from_handler, awakeable_id = await _waiting_on_an_awakeable(client)
    response = await client.call("/Awakeables/reject", {"id": awakeable_id, "reason": "denied"})
    assert response.status == 200, response.body
    response = await client.attach(from_handler)
    assert response.status == 500 and response.json()["message"] == "denied"


async def test_bad_awakeable_ids_get_clear_errors(shared: Cluster, client: Client) -> None:
    response = await client.call("/restate/awakeables/not-an-id/resolve", "x")
    assert response.status == 400 and response.json()["code"] == 400
    response = await client.call("/Awakeables/resolve_bad_id", "sign_1garbage!")
    assert response.status == 200, response.body
    assert response.json().startswith("400: ")

    key = _key()
    invocation_id = await client.send("/Awakeables/wait_for_two", key)
    first, second = await _published_awakeables(client, key)
    assert await _resolve(client, first, "a") == 202
    # Completed already (its invocation still waits for the second one): 409.
    assert await _resolve(client, first, "again") == 409
    response = await client.call(f"/restate/awakeables/{first}/reject", "late")
    assert response.status == 409 and response.json()["code"] == 409
    assert await _resolve(client, second, "b") == 202
    response = await client.attach(invocation_id)
    assert response.status == 200 and response.json() == ["a", "b"]
    # Its invocation has ended: the id is unknown now.
    response = await client.call(f"/restate/awakeables/{second}/resolve", "after the end")
    assert response.status == 404 and response.json()["code"] == 404
    # The node keeps serving.
    assert (await client.call("/Squares/square", 3)).json() == 9


# ---------------------------------------------------------------- cancelling


async def test_cancel_through_send_handle_and_call_future(shared: Cluster, client: Client) -> None:
    response = await client.call("/Sleepy/send_and_cancel", 60_000)
    assert response.status == 200, response.body
    cancelled = await client.attach(response.json())
    assert cancelled.status == 409, cancelled.body

    response = await client.call("/Sleepy/call_and_cancel", 60_000)
    assert response.status == 200, response.body
    callee, code = response.json().split()
    assert code == "409"
    assert (await client.attach(callee)).status == 409
