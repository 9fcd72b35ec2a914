"""Editing an object's state through the log (issue 11): ``POST /services/{s}/state`` and
``cairn state edit``, against a real node and a real ``python -m sdk`` endpoint."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Cluster
from tests.e2e.harness import Client

APP = "tests.e2e.apps.core:app"


@pytest.fixture(scope="module")
def log_kind() -> str:
    """The local log only: the edit is one record like any other (the Kafka log appends it
    the same way; tests/e2e/test_cluster.py covers it on Kafka from another node)."""
    return "local"


def _bytes(value: str) -> list[int]:
    return list(value.encode())


async def _state(client: Client, key: str) -> dict[str, Any]:
    response = await client.admin("GET", f"/services/Counter/state/{key}")
    assert response.status == 200, response.body
    body: dict[str, Any] = response.json()
    return body


async def test_a_patched_counter_is_what_the_next_call_sees(
    shared: Cluster, client: Client
) -> None:
    key = uuid.uuid4().hex
    before = await _state(client, key)
    assert before["state"] == {}
    body = {"object_key": key, "version": before["version"], "new_state": {"count": _bytes("41")}}
    response = await client.admin("POST", "/services/Counter/state", body)
    assert response.status == 200, response.body
    after = await _state(client, key)
    assert after["state"] == {"count": 41}
    assert (
        response.json() == {"version": after["version"]} and after["version"] != before["version"]
    )
    added = await client.call(f"/Counter/{key}/add", 1)
    assert (added.status, added.json()) == (200, 42)
    # new_state_json: each value stored as its JSON encoding; names left out are removed.
    body = {"object_key": key, "version": None, "new_state_json": {"note": {"a": [1, "x"]}}}
    response = await client.admin("POST", "/services/Counter/state", body)
    assert response.status == 200, response.body
    state = await client.call(f"/Counter/{key}/state")
    assert state.json() == {"note": {"a": [1, "x"]}}


async def test_a_version_mismatch_is_409_and_changes_nothing(
    shared: Cluster, client: Client
) -> None:
    key = uuid.uuid4().hex
    await client.call(f"/Counter/{key}/add", 5)
    stale = (await _state(client, "never-written"))["version"]
    body = {"object_key": key, "version": stale, "new_state_json": {"count": 100}}
    response = await client.admin("POST", "/services/Counter/state", body)
    assert response.status == 409, response.body
    assert response.json() == {"code": 409, "message": "state version mismatch"}
    assert (await _state(client, key))["state"] == {"count": 5}


async def test_a_patch_waits_for_the_running_invocation_of_its_key(
    shared: Cluster, client: Client
) -> None:
    """``hold`` holds the key's lock until its awakeable is resolved: the patch sent meanwhile
    is applied only after it ends (the state it sees stays its own), before the next call."""
    key = uuid.uuid4().hex
    holder = await client.send(f"/Counter/{key}/hold")

    async def pending() -> Any:
        return (await _state(client, key))["state"].get("pending")

    awakeable_id = await client.wait_for(pending)
    body = {"object_key": key, "version": None, "new_state_json": {"count": 7}}
    patch = asyncio.ensure_future(client.admin("POST", "/services/Counter/state", body))
    # Give the patch ample time to reach the log: it must stay queued, the state untouched.
    await asyncio.sleep(1.0)
    assert not patch.done()
    assert (await _state(client, key))["state"] == {"pending": awakeable_id}
    response = await client.call(f"/restate/awakeables/{awakeable_id}/resolve", "go")
    assert response.status == 202, response.body
    assert (await client.attach(holder)).json() == "go"
    applied = await asyncio.wait_for(patch, 30)
    assert applied.status == 200, applied.body
    assert (await _state(client, key))["state"] == {"count": 7}
    assert (await client.call(f"/Counter/{key}/add", 1)).json() == 8


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/services/Counter/state", [1, 2], 400, "expected"),
        ("/services/Counter/state", {"object_key": 3, "new_state": {}}, 400, "object_key"),
        ("/services/Counter/state", {"object_key": "k"}, 400, "exactly one"),
        (
            "/services/Counter/state",
            {"object_key": "k", "new_state": {"a": [1, 256]}},
            400,
            "array of bytes",
        ),
        (
            "/services/Counter/state",
            {"object_key": "k", "version": 1, "new_state": {}},
            400,
            "version",
        ),
        ("/services/Counter/state", {"object_key": "k", "new_state": {}, "x": 1}, 400, "unknown"),
        ("/services/Nope/state", {"object_key": "k", "new_state": {}}, 404, "not found"),
        ("/services/Greeter/state", {"object_key": "k", "new_state": {}}, 400, "virtual objects"),
    ],
)
async def test_bad_bodies_get_a_clear_json_error(
    shared: Cluster, client: Client, path: str, body: Any, status: int, words: str
) -> None:
    response = await client.admin("POST", path, body)
    assert response.status == status, response.body
    error = response.json()
    assert error["code"] == status and words in error["message"], error


async def test_a_body_that_is_not_json_is_400(shared: Cluster, client: Client) -> None:
    response = await client.request(
        "POST", f"{client.node.admin}/services/Counter/state", raw=b"{not json"
    )
    assert response.status == 400, response.body
    assert response.json()["code"] == 400
