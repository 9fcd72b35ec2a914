"""Issue 4 end to end: workflows, durable promises, attach, cancel / kill / purge and retention
over HTTP, on the local log and on Kafka."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cluster
from tests.e2e.harness import ROOT, Client, Response

APP = "tests.e2e.apps.workflows:app"

UNKNOWN_ID = "inv_" + "0" * 48
VOID = {"type": "void"}  # how the admin API shows an empty completion


def _key() -> str:
    return uuid.uuid4().hex


async def _get(client: Client, path: str, method: str = "GET") -> Response:
    return await client.call(path, method=method)


async def _ok(client: Client, path: str, body: object = None) -> Any:
    response = await client.call(path, body)
    assert response.status == 200, (path, response.body)
    return response.json()


async def _stage(client: Client, workflow: str, key: str) -> str | None:
    response = await client.call(f"/{workflow}/{key}/stage")
    assert response.status == 200, response.body
    stage: str | None = response.json()
    return stage


async def _wait_stage(client: Client, workflow: str, key: str, stage: str) -> None:
    async def reached() -> bool:
        return await _stage(client, workflow, key) == stage

    await client.wait_for(reached)


async def _state(client: Client, service: str, key: str) -> dict[str, Any]:
    response = await client.admin("GET", f"/services/{service}/state/{key}")
    assert response.status == 200, response.body
    state: dict[str, Any] = response.json()["state"]
    return state


async def _resolve(client: Client, key: str, name: str, value: object) -> Response:
    return await client.call(f"/Signals/{key}/resolve", {"name": name, "value": value})


def _error(response: Response, status: int) -> str:
    """The message of a JSON error response with ``status``."""
    assert response.status == status, (response.status, response.body)
    body = response.json()
    assert body["code"] == status, body
    message: str = body["message"]
    return message


# ---------------------------------------------------------------- the seed's workflow


async def test_order_workflow_waits_for_payment_inventory_and_approval(
    shared: Cluster, client: Client
) -> None:
    key = _key()
    invocation_id = await client.send(f"/OrderWorkflow/{key}/run", "Ada")
    status = f"/OrderWorkflow/{key}/status"

    async def waiting_for_events() -> bool:
        return await _ok(client, status) == "waiting for payment and inventory"

    await client.wait_for(waiting_for_events)
    bad = await client.call(f"/OrderWorkflow/{key}/confirm_payment", "not a payment")
    _error(bad, 400)
    payment = {"transaction_id": "tx-1", "amount": 42}
    assert await _ok(client, f"/OrderWorkflow/{key}/confirm_payment", payment) is None
    # One of the two gathered promises is not enough.
    await asyncio.sleep(0.3)
    assert await _ok(client, status) == "waiting for payment and inventory"
    output = await _get(client, f"/restate/workflow/OrderWorkflow/{key}/output")
    _error(output, 470)
    inventory = {"warehouse": "north", "items": 3}
    assert await _ok(client, f"/OrderWorkflow/{key}/confirm_inventory", inventory) is None

    async def waiting_for_approval() -> bool:
        return await _ok(client, status) == "waiting for approval"

    await client.wait_for(waiting_for_approval)
    assert await _ok(client, f"/OrderWorkflow/{key}/approve_request", True) is None
    attach = await _get(client, f"/restate/workflow/OrderWorkflow/{key}/attach")
    assert attach.status == 200, attach.body
    assert attach.json() == {
        "customer": "Ada",
        "transaction": "tx-1",
        "amount": 42,
        "warehouse": "north",
        "approved": True,
    }
    assert attach.headers["x-restate-id"] == invocation_id
    assert await _ok(client, status) == "approved"  # state outlives the run (retention)


# ---------------------------------------------------------------- submission and attach


async def test_a_second_submission_gets_409_and_the_result_stays_available(
    shared: Cluster, client: Client
) -> None:
    key = _key()
    first = asyncio.create_task(client.call(f"/Signals/{key}/run", False))
    await _wait_stage(client, "Signals", key, "waiting for answer")
    output = await _get(client, f"/restate/workflow/Signals/{key}/output")
    _error(output, 470)
    invocation_id = output.headers["x-restate-id"]

    again = await client.call(f"/Signals/{key}/run", True)
    assert "already submitted" in _error(again, 409)
    assert again.headers["x-restate-id"] == invocation_id
    assert not first.done()

    assert (await _resolve(client, key, "answer", 42)).status == 200
    response = await first
    assert response.status == 200, response.body
    expected = {"early_peek": None, "answer": 42}
    assert response.json() == expected
    assert response.headers["x-restate-id"] == invocation_id

    after = await client.call(f"/Signals/{key}/run", False)
    assert "already submitted" in _error(after, 409)
    for verb in ("attach", "output"):
        kept = await _get(client, f"/restate/workflow/Signals/{key}/{verb}")
        assert (kept.status, kept.json()) == (200, expected)
    # A one-way submission names the same run and does not start another one.
    assert await client.send(f"/Signals/{key}/run", True) == invocation_id
    await asyncio.sleep(0.2)
    assert await _stage(client, "Signals", key) == "done"
    kept = await _get(client, f"/restate/invocation/{invocation_id}/output")
    assert (kept.status, kept.json()) == (200, expected)


async def test_attach_and_output_before_and_after_completion(
    shared: Cluster, client: Client
) -> None:
    key = _key()
    invocation_id = await client.send(f"/Signals/{key}/run", False)
    await _wait_stage(client, "Signals", key, "waiting for answer")
    by_workflow = f"/restate/workflow/Signals/{key}"
    by_id = f"/restate/invocation/{invocation_id}"
    for base in (by_workflow, by_id):
        response = await _get(client, f"{base}/output")
        _error(response, 470)
        assert response.headers["x-restate-id"] == invocation_id

    attaches = [
        asyncio.create_task(_get(client, f"{base}/attach", method))
        for base in (by_workflow, by_id)
        for method in ("GET", "POST")
    ]
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in attaches)
    assert (await _resolve(client, key, "answer", "yes")).status == 200
    expected = {"early_peek": None, "answer": "yes"}
    for response in await asyncio.gather(*attaches):
        assert (response.status, response.json()) == (200, expected)
        assert response.headers["x-restate-id"] == invocation_id
    for base in (by_workflow, by_id):
        for method in ("GET", "POST"):
            response = await _get(client, f"{base}/output", method)
            assert (response.status, response.json()) == (200, expected)

    assert "not found" in _error(
        await _get(client, f"/restate/workflow/Signals/{_key()}/attach"), 404
    )
    assert "not found" in _error(
        await _get(client, f"/restate/workflow/Signals/{_key()}/output"), 404
    )
    assert "not found" in _error(
        await _get(client, f"/restate/invocation/{UNKNOWN_ID}/attach"), 404
    )
    assert "not a workflow" in _error(await _get(client, "/restate/workflow/Greeter/x/output"), 400)
    _error(await _get(client, "/restate/workflow/Nope/x/output"), 404)
    _error(await _get(client, "/restate/invocation/not-an-id/attach"), 400)


async def test_idempotent_invocations_attach_by_id_and_by_idempotency_key(
    shared: Cluster, client: Client
) -> None:
    idempotency_key = _key()
    headers = {"idempotency-key": idempotency_key}
    greeted = await client.call("/Greeter/greet", "Ada", headers=headers)
    assert (greeted.status, greeted.json()) == (200, "Hello, Ada!")
    invocation_id = greeted.headers["x-restate-id"]
    for path in (
        f"/restate/invocation/Greeter/greet/{idempotency_key}",
        f"/restate/invocation/{invocation_id}",
    ):
        for verb in ("attach", "output"):
            response = await _get(client, f"{path}/{verb}")
            assert (response.status, response.json()) == (200, "Hello, Ada!"), path
            assert response.headers["x-restate-id"] == invocation_id
    unknown = await _get(client, f"/restate/invocation/Greeter/greet/{_key()}/attach")
    _error(unknown, 404)

    # A virtual object's idempotent invocation, attached while it runs.
    key = _key()
    holder = await client.send(f"/Locker/{key}/hold", None, headers=headers)
    assert await client.send(f"/Locker/{key}/hold", None, headers=headers) == holder
    by_key = f"/restate/invocation/Locker/{key}/hold/{idempotency_key}"

    async def pending() -> str | None:
        value: str | None = (await _state(client, "Locker", key)).get("pending")
        return value

    awakeable_id = await client.wait_for(pending)
    output = await _get(client, f"{by_key}/output")
    _error(output, 470)
    assert output.headers["x-restate-id"] == holder
    attach = asyncio.create_task(_get(client, f"{by_key}/attach"))
    await asyncio.sleep(0.2)
    assert not attach.done()
    resolved = await client.call(f"/restate/awakeables/{awakeable_id}/resolve", "released")
    assert resolved.status == 202, resolved.body
    response = await attach
    assert (response.status, response.json()) == (200, "released")
    assert response.headers["x-restate-id"] == holder
    by_id = await _get(client, f"/restate/invocation/{holder}/attach", "POST")
    assert (by_id.status, by_id.json()) == (200, "released")


# ---------------------------------------------------------------- durable promises


async def test_a_promise_resolved_before_the_run_awaits_it_is_delivered(
    shared: Cluster, client: Client
) -> None:
    # Resolved while the run waits for something else.
    key = _key()
    invocation_id = await client.send(f"/Signals/{key}/run", True)
    await _wait_stage(client, "Signals", key, "waiting for go")
    assert await _ok(client, f"/Signals/{key}/resolve", {"name": "answer", "value": "early"}) == (
        "resolved answer"
    )
    assert await _stage(client, "Signals", key) == "waiting for go"
    assert (await _resolve(client, key, "go", None)).status == 200
    response = await _get(client, f"/restate/invocation/{invocation_id}/attach")
    assert (response.status, response.json()) == (200, {"early_peek": None, "answer": "early"})

    # Resolved before the workflow was even submitted.
    key = _key()
    assert (await _resolve(client, key, "answer", {"before": True})).status == 200
    response = await client.call(f"/Signals/{key}/run", False)
    assert response.status == 200, response.body
    assert response.json() == {"early_peek": {"before": True}, "answer": {"before": True}}


async def test_resolving_a_promise_twice_fails_with_409(shared: Cluster, client: Client) -> None:
    key = _key()
    assert (await _resolve(client, key, "answer", 1)).status == 200
    second = await _resolve(client, key, "answer", 2)
    assert _error(second, 409) == "promise 'answer' is already completed"
    rejected = await client.call(
        f"/Signals/{key}/reject", {"name": "answer", "message": "late", "code": 400}
    )
    assert _error(rejected, 409) == "promise 'answer' is already completed"
    assert await _ok(client, f"/Signals/{key}/peek", "answer") == 1  # the first value stays
    response = await client.call(f"/Signals/{key}/run", False)
    assert (response.status, response.json()) == (200, {"early_peek": 1, "answer": 1})


async def test_peek_is_none_before_resolution_and_the_value_after(
    shared: Cluster, client: Client
) -> None:
    key = _key()
    assert await _ok(client, f"/Signals/{key}/peek", "answer") is None
    assert (await _resolve(client, key, "answer", ["a", 1])).status == 200
    assert await _ok(client, f"/Signals/{key}/peek", "answer") == ["a", 1]
    assert await _ok(client, f"/Signals/{key}/peek", "other") is None

    # A rejected promise: peek and value both raise its TerminalError.
    key = _key()
    rejected = await client.call(
        f"/Signals/{key}/reject", {"name": "answer", "message": "no answer", "code": 422}
    )
    assert rejected.status == 200, rejected.body
    assert _error(await client.call(f"/Signals/{key}/peek", "answer"), 422) == "no answer"
    run = await client.call(f"/Signals/{key}/run", False)
    assert _error(run, 422) == "no answer"


# ---------------------------------------------------------------- cancel, kill, purge


@pytest.mark.parametrize("workflow", ["Cancellable", "CancellableSuspending"])
async def test_cancel_runs_compensation_and_cancels_the_child(
    shared: Cluster, client: Client, tmp_path: Path, workflow: str
) -> None:
    key = _key()
    path = tmp_path / "compensations.txt"
    invocation_id = await client.send(f"/{workflow}/{key}/run", str(path))
    await _wait_stage(client, workflow, key, "sleeping")
    child = (await _state(client, workflow, key))["child"]

    async def parked(invocation: str, phase: str) -> bool:
        status = await client.invocation(invocation)
        return bool(status["status"] == phase and status["journal"][-1]["command"] == "sleep")

    await client.wait_for(lambda: parked(child, "suspended"))
    phase = "suspended" if workflow == "CancellableSuspending" else "invoked"
    await client.wait_for(lambda: parked(invocation_id, phase))

    cancel = await client.admin("PATCH", f"/invocations/{invocation_id}/cancel")
    # Restate 1.7: 202 with no body for a cancel that reached a running invocation.
    assert (cancel.status, cancel.body) == (202, b""), cancel.body
    response = await _get(client, f"/restate/invocation/{invocation_id}/attach")
    assert _error(response, 409) == "cancelled"
    child_response = await _get(client, f"/restate/invocation/{child}/attach")
    assert _error(child_response, 409) == "cancelled"

    assert sorted(path.read_text().splitlines()) == ["child compensated", "workflow compensated"]
    assert await _stage(client, workflow, key) == "compensated after 409 cancelled"
    status = await client.invocation(invocation_id)
    assert status["result"] == {"failure": {"code": 409, "message": "cancelled"}}
    again = await client.admin("PATCH", f"/invocations/{invocation_id}/cancel")
    assert "already completed" in _error(again, 409)


async def test_kill_of_a_blocked_object_invocation_releases_the_lock(
    shared: Cluster, client: Client
) -> None:
    key = _key()
    holder = await client.send(f"/Locker/{key}/hold", None)

    async def pending() -> bool:
        return "pending" in await _state(client, "Locker", key)

    await client.wait_for(pending)
    doomed = await client.send(f"/Locker/{key}/add", 100)
    queued = await client.send(f"/Locker/{key}/add", 5)
    for invocation_id in (doomed, queued):
        assert (await client.invocation(invocation_id))["status"] == "inboxed"
    # Killing a queued invocation takes it out of the queue.
    assert (await client.admin("PATCH", f"/invocations/{doomed}/kill")).status == 200
    assert _error(await _get(client, f"/restate/invocation/{doomed}/attach"), 409) == "killed"
    await asyncio.sleep(0.2)
    assert (await client.invocation(queued))["status"] == "inboxed"

    kill = await client.admin("PATCH", f"/invocations/{holder}/kill")
    assert (kill.status, kill.body) == (200, b""), kill.body
    assert _error(await _get(client, f"/restate/invocation/{holder}/attach"), 409) == "killed"
    response = await _get(client, f"/restate/invocation/{queued}/attach")
    assert (response.status, response.json()) == (200, 5)
    assert await _ok(client, f"/Locker/{key}/add", 1) == 6  # the lock is free
    assert await _ok(client, f"/Locker/{key}/get") == 6
    again = await client.admin("PATCH", f"/invocations/{holder}/kill")
    assert "already completed" in _error(again, 409)


async def test_purge_forgets_a_completed_workflow_and_refuses_a_running_one(
    shared: Cluster, client: Client
) -> None:
    key = _key()
    assert (await _resolve(client, key, "answer", "first")).status == 200
    first = await client.call(f"/Signals/{key}/run", False)
    assert (first.status, first.json()) == (200, {"early_peek": "first", "answer": "first"})
    invocation_id = first.headers["x-restate-id"]

    running_key = _key()
    running = await client.send(f"/Signals/{running_key}/run", True)
    await _wait_stage(client, "Signals", running_key, "waiting for go")
    refused = await client.admin("PATCH", f"/invocations/{running}/purge")
    assert _error(refused, 409) == "only completed invocations can be purged"
    assert (await client.invocation(running))["status"] != "completed"

    purge = await client.admin("PATCH", f"/invocations/{invocation_id}/purge")
    assert (purge.status, purge.body) == (200, b""), purge.body
    assert (await client.admin("GET", f"/invocations/{invocation_id}")).status == 404
    _error(await _get(client, f"/restate/workflow/Signals/{key}/output"), 404)
    _error(await _get(client, f"/restate/invocation/{invocation_id}/attach"), 404)
    assert await _state(client, "Signals", key) == {}
    assert await _ok(client, f"/Signals/{key}/peek", "answer") is None  # promises went too
    again = await client.admin("PATCH", f"/invocations/{invocation_id}/purge")
    assert "not found" in _error(again, 404)
    _error(await client.admin("PATCH", "/invocations/not-an-id/purge"), 400)

    # The key can be submitted again and runs afresh.
    second = asyncio.create_task(client.call(f"/Signals/{key}/run", False))
    await _wait_stage(client, "Signals", key, "waiting for answer")
    assert (await _resolve(client, key, "answer", "second")).status == 200
    response = await second
    assert (response.status, response.json()) == (200, {"early_peek": None, "answer": "second"})
    assert response.headers["x-restate-id"] == invocation_id

    # An idempotent invocation: purged, its idempotency key runs again.
    headers = {"idempotency-key": _key()}
    object_key = _key()
    added = await client.call(f"/Locker/{object_key}/add", 3, headers=headers)
    assert (added.status, added.json()) == (200, 3)
    purge = await client.admin("PATCH", f"/invocations/{added.headers['x-restate-id']}/purge")
    assert purge.status == 200, purge.body
    again_added = await client.call(f"/Locker/{object_key}/add", 3, headers=headers)
    assert (again_added.status, again_added.json()) == (200, 6)
    assert (await _resolve(client, running_key, "go", None)).status == 200
    assert (await _resolve(client, running_key, "answer", 0)).status == 200


# ---------------------------------------------------------------- retention

RETENTION_S = 3.0


async def test_workflow_retention_expires_result_state_and_promises(
    shared: Cluster, client: Client
) -> None:
    key = _key()
    response = await client.call(f"/Ephemeral/{key}/run", "x")
    completed = time.monotonic()
    assert (response.status, response.json()) == (200, "remembered x")
    invocation_id = response.headers["x-restate-id"]
    output = f"/restate/workflow/Ephemeral/{key}/output"
    assert (await _get(client, output)).json() == "remembered x"
    assert await _ok(client, f"/Ephemeral/{key}/recall") == {"value": "x", "echo": "x"}
    assert await _state(client, "Ephemeral", key) == {"value": "x"}
    _error(await client.call(f"/Ephemeral/{key}/run", "y"), 409)

    async def expired() -> bool:
        return (await _get(client, output)).status == 404

    await client.wait_for(expired, timeout_s=RETENTION_S + 10)
    assert time.monotonic() - completed >= RETENTION_S - 0.2
    _error(await _get(client, f"/restate/workflow/Ephemeral/{key}/attach"), 404)
    assert (await client.admin("GET", f"/invocations/{invocation_id}")).status == 404
    assert await _state(client, "Ephemeral", key) == {}
    assert await _ok(client, f"/Ephemeral/{key}/recall") == {"value": None, "echo": None}
    assert await _ok(client, f"/Ephemeral/{key}/run", "y") == "remembered y"


async def test_a_purged_workflows_old_retention_does_not_cut_the_new_runs(
    shared: Cluster, client: Client
) -> None:
    key = _key()
    assert await _ok(client, f"/Ephemeral/{key}/run", "a") == "remembered a"
    first_completed = time.monotonic()
    invocation_id = (await _get(client, f"/restate/workflow/Ephemeral/{key}/output")).headers[
        "x-restate-id"
    ]
    assert (await client.admin("PATCH", f"/invocations/{invocation_id}/purge")).status == 200
    await client.send(f"/Ephemeral/{key}/run", "wait-b")
    # The second run completes 2 s after the first: its retention ends 2 s after the first's.
    await asyncio.sleep(first_completed + 2.0 - time.monotonic())
    assert await _ok(client, f"/Ephemeral/{key}/release") is None
    attach = await _get(client, f"/restate/workflow/Ephemeral/{key}/attach")
    assert (attach.status, attach.json()) == (200, "remembered wait-b")
    # Past the first run's retention, inside the second one's.
    await asyncio.sleep(first_completed + RETENTION_S + 0.6 - time.monotonic())
    output = await _get(client, f"/restate/workflow/Ephemeral/{key}/output")
    assert (output.status, output.json()) == (200, "remembered wait-b")
    assert await _ok(client, f"/Ephemeral/{key}/recall") == {"value": "wait-b", "echo": "wait-b"}


async def test_idempotency_retention_expires(shared: Cluster, client: Client) -> None:
    key = _key()
    idempotency_key = _key()
    headers = {"idempotency-key": idempotency_key}
    path = f"/Locker/{key}/add_briefly_idempotent"
    first = await client.call(path, 5, headers=headers)
    assert (first.status, first.json()) == (200, 5)
    again = await client.call(path, 5, headers=headers)
    assert (again.status, again.json()) == (200, 5)
    assert again.headers["x-restate-id"] == first.headers["x-restate-id"]
    by_key = f"/restate/invocation/Locker/{key}/add_briefly_idempotent/{idempotency_key}/output"
    assert (await _get(client, by_key)).json() == 5

    async def expired() -> bool:
        return (await _get(client, by_key)).status == 404

    await client.wait_for(expired, timeout_s=12)
    later = await client.call(path, 5, headers=headers)
    assert (later.status, later.json()) == (200, 10)  # a new invocation with the same id
    assert later.headers["x-restate-id"] == first.headers["x-restate-id"]


# ---------------------------------------------------------------- crash


async def test_a_workflow_waiting_on_a_promise_survives_kill_9(
    cluster: Cluster, client: Client
) -> None:
    key = _key()
    invocation_id = await client.send(f"/Signals/{key}/run", True)
    await _wait_stage(client, "Signals", key, "waiting for go")
    assert (await _resolve(client, key, "answer", "kept")).status == 200
    await cluster.node.restart()
    assert await _stage(client, "Signals", key) == "waiting for go"
    assert (await _resolve(client, key, "go", None)).status == 200
    response = await _get(client, f"/restate/invocation/{invocation_id}/attach")
    assert (response.status, response.json()) == (200, {"early_peek": None, "answer": "kept"})
    again = await _resolve(client, key, "go", None)
    assert _error(again, 409) == "promise 'go' is already completed"


# ---------------------------------------------------------------- from a service


async def test_workflow_call_and_send_from_a_service(shared: Cluster, client: Client) -> None:
    key = _key()
    call = asyncio.create_task(client.call("/Shop/submit_and_wait", key))
    await _wait_stage(client, "Signals", key, "waiting for answer")
    assert not call.done()
    assert (await _resolve(client, key, "answer", "from the shop")).status == 200
    expected = {"early_peek": None, "answer": "from the shop"}
    response = await call
    assert (response.status, response.json()) == (200, expected)
    workflow = await _get(client, f"/restate/workflow/Signals/{key}/output")
    assert (workflow.status, workflow.json()) == (200, expected)
    # Calling run of a finished workflow attaches to its result: it does not run again.
    assert await _ok(client, "/Shop/submit_and_wait", key) == expected

    key = _key()
    sent_id = await _ok(client, "/Shop/submit", key)
    await _wait_stage(client, "Signals", key, "waiting for go")
    output = await _get(client, f"/restate/workflow/Signals/{key}/output")
    _error(output, 470)
    assert output.headers["x-restate-id"] == sent_id
    assert (await _resolve(client, key, "go", None)).status == 200
    assert (await _resolve(client, key, "answer", 7)).status == 200
    attach = await _get(client, f"/restate/workflow/Signals/{key}/attach")
    assert (attach.status, attach.json()) == (200, {"early_peek": None, "answer": 7})


# ---------------------------------------------------------------- admin and CLI


async def _cli(shared: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "runtime.cli", *args, "--admin", shared.node.admin]
    return await asyncio.to_thread(
        subprocess.run, argv, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


async def test_admin_shows_status_target_and_journal(shared: Cluster, client: Client) -> None:
    key = _key()
    invocation_id = await client.send(f"/Signals/{key}/run", True)
    await _wait_stage(client, "Signals", key, "waiting for go")
    status = await client.invocation(invocation_id)
    assert status["id"] == invocation_id
    assert status["status"] in ("invoked", "suspended")
    assert status["target"] == f"Signals/{key}/run"
    assert (status["service"], status["handler"], status["key"]) == ("Signals", "run", key)
    journal = [(e["command"], e["completed"]) for e in status["journal"]]
    assert journal == [
        ("input", False),
        ("peek_promise('answer')", True),
        ("set_state('early_peek')", False),
        ("set_state('stage')", False),
        ("get_promise('go')", False),
    ]
    assert status["journal"][1]["completion"] == VOID
    assert (await _resolve(client, key, "go", None)).status == 200
    assert (await _resolve(client, key, "answer", "done")).status == 200
    done = await _get(client, f"/restate/invocation/{invocation_id}/attach")
    assert done.status == 200
    status = await client.invocation(invocation_id)
    assert status["status"] == "completed"
    assert status["result"] == {"value": {"early_peek": None, "answer": "done"}}


async def test_cli_lists_describes_cancels_kills_and_purges(
    shared: Cluster, client: Client
) -> None:
    key = _key()
    invocation_id = await client.send(f"/Signals/{key}/run", True)
    await _wait_stage(client, "Signals", key, "waiting for go")

    listed = await _cli(shared, "invocations", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert rows[invocation_id]["status"] in ("invoked", "suspended")
    assert rows[invocation_id]["target"] == f"Signals/{key}/run"
    completed = await _cli(shared, "invocations", "list", "--status", "completed", "--json")
    assert completed.returncode == 0, completed.stderr
    assert invocation_id not in completed.stdout

    described = await _cli(shared, "invocations", "describe", invocation_id, "--json")
    assert described.returncode == 0, described.stderr
    body = json.loads(described.stdout)
    assert (body["id"], body["target"]) == (invocation_id, f"Signals/{key}/run")
    assert body["journal"][-1]["command"] == "get_promise('go')"

    refused = await _cli(shared, "invocations", "purge", invocation_id)
    assert refused.returncode == 1
    assert "failed with 409" in refused.stderr and "only completed" in refused.stderr

    cancelled = await _cli(shared, "invocations", "cancel", invocation_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"cancel requested for {invocation_id}"
    response = await _get(client, f"/restate/invocation/{invocation_id}/attach")
    assert _error(response, 409) == "cancelled"

    purged = await _cli(shared, "invocations", "purge", invocation_id)
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.strip() == f"purged {invocation_id}"
    assert (await client.admin("GET", f"/invocations/{invocation_id}")).status == 404

    object_key = _key()
    holder = await client.send(f"/Locker/{object_key}/hold", None)

    async def pending() -> bool:
        return "pending" in await _state(client, "Locker", object_key)

    await client.wait_for(pending)
    killed = await _cli(shared, "invocations", "kill", holder)
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.strip() == f"killed {holder}"
    assert _error(await _get(client, f"/restate/invocation/{holder}/attach"), 409) == "killed"

    for action in ("describe", "cancel", "kill", "purge"):
        unknown = await _cli(shared, "invocations", action, UNKNOWN_ID)
        assert unknown.returncode == 1, (action, unknown.stdout)
        assert "failed with 404" in unknown.stderr and "not found" in unknown.stderr, action
        assert "Traceback" not in unknown.stderr
    malformed = await _cli(shared, "invocations", "describe", "nope")
    assert malformed.returncode == 1
    assert "failed with 400" in malformed.stderr and "not an invocation id" in malformed.stderr


async def test_a_state_patch_waits_for_the_workflow_run_of_its_key(
    shared: Cluster, client: Client
) -> None:
    """The run holds its key's lock: a patch sent while it waits for a promise is applied only
    once it ends (its shared handlers meanwhile read the run's own state)."""
    key = _key()
    invocation_id = await client.send(f"/Signals/{key}/run", True)
    await _wait_stage(client, "Signals", key, "waiting for go")
    body = {"object_key": key, "version": None, "new_state_json": {"stage": "patched"}}
    patch = asyncio.ensure_future(client.admin("POST", "/services/Signals/state", body))
    await asyncio.sleep(1.0)  # ample time to reach the log; it must stay queued
    assert not patch.done()
    assert await _stage(client, "Signals", key) == "waiting for go"
    assert (await _resolve(client, key, "go", None)).status == 200
    assert (await _resolve(client, key, "answer", 1)).status == 200
    response = await _get(client, f"/restate/invocation/{invocation_id}/attach")
    assert response.status == 200, response.body
    applied = await asyncio.wait_for(patch, 30)
    assert applied.status == 200, applied.body
    assert await _state(client, "Signals", key) == {"stage": "patched"}
