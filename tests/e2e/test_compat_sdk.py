"""Restate compatibility, the SDK half, end to end: handlers written for restate-sdk (``import
restate``) served by ``python -m sdk`` against a real node, on the local log and on Kafka."""

from __future__ import annotations

import uuid
from typing import Any

from tests.e2e.conftest import Cluster
from tests.e2e.harness import Client

APP = "tests.e2e.apps.compat_sdk:app"

LEFT_OUT = {"serviceName": "S", "handlerName": "h", "message": [1, 2]}


async def _ok(client: Client, path: str, body: Any = None) -> Any:
    response = await client.call(path, body)
    assert response.status == 200, response.body
    return response.json()


# ---------------------------------------------------------------- optional fields


async def test_optional_fields_may_be_left_out(shared: Cluster, client: Client) -> None:
    assert await _ok(client, "/CompatSdk/proxy", LEFT_OUT) == {
        "keys": ["handlerName", "message", "serviceName"],
        "delayMillis": None,
        "message": [1, 2],
    }
    given = await _ok(client, "/CompatSdk/proxy", {**LEFT_OUT, "delayMillis": 250})
    assert given["delayMillis"] == 250
    # nested, in a list, with a NotRequired key left out
    requests = [LEFT_OUT, {**LEFT_OUT, "serviceName": "T", "delayMillis": 5}]
    assert await _ok(client, "/CompatSdk/batch", {"requests": requests}) == {
        "services": ["S", "T"],
        "delayed": 1,
        "note": None,
    }
    # a dataclass with defaults and an Optional field
    assert await _ok(client, "/CompatSdk/greet", {"name": "Ada"}) == "Hello, Ada!"
    greeting = {"name": "Ada", "title": "Dr.", "punctuation": "."}
    assert await _ok(client, "/CompatSdk/greet", greeting) == "Hello, Dr. Ada."
    # as a call argument and a call result between handlers
    assert (await _ok(client, "/CompatSdk/forward", LEFT_OUT))["delayMillis"] is None


async def test_a_required_field_left_out_is_a_clear_400(shared: Cluster, client: Client) -> None:
    response = await client.call("/CompatSdk/proxy", {"handlerName": "h", "message": []})
    assert response.status == 400, response.body
    body = response.json()
    assert body["code"] == 400 and "serviceName" in body["message"]
    response = await client.call("/CompatSdk/proxy", {**LEFT_OUT, "delayMillis": "soon"})
    assert response.status == 400 and "$.delayMillis" in response.json()["message"]


async def test_an_input_that_does_not_fit_a_dataclass_is_a_400(
    shared: Cluster, client: Client
) -> None:
    # restate-sdk answers 500 "Unable to parse an input argument. ..."; Cairn a 400 (README table).
    for body, field in (({"title": "Dr."}, "`name`"), ({"name": 7}, "$.name")):
        response = await client.call("/CompatSdk/greet", body)
        assert response.status == 400, response.body
        message = response.json()["message"]
        assert message.startswith("cannot decode the value as Greeting: ") and field in message


# ---------------------------------------------------------------- TerminalError metadata


async def test_terminal_error_metadata_in_the_ingress_error_body(
    shared: Cluster, client: Client
) -> None:
    response = await client.call("/CompatSdk/reject", "too big")
    assert response.status == 422, response.body
    assert response.json() == {
        "code": 422,
        "message": "rejected: too big",
        "metadata": {"reason": "too big", "retry": "never"},
        "source": "invocation",
    }
    # the result is stored with it: attaching later shows the same body
    attached = await client.attach(response.headers["x-restate-id"])
    assert attached.status == 422 and attached.json()["metadata"]["reason"] == "too big"
    # through a caller that does not catch it
    response = await client.call("/CompatSdk/rethrow", "late")
    assert response.status == 422 and response.json()["metadata"] == {
        "reason": "late",
        "retry": "never",
    }


async def test_a_failure_without_metadata_has_no_metadata_field(
    shared: Cluster, client: Client
) -> None:
    response = await client.call("/CompatSdk/proxy", {"message": []})
    assert response.status == 400 and "metadata" not in response.json()


async def test_a_calling_handler_sees_the_metadata(shared: Cluster, client: Client) -> None:
    assert await _ok(client, "/CompatSdk/catch_rejection", "odd") == {
        "call": {
            "status_code": 422,
            "message": "rejected: odd",
            "metadata": {"reason": "odd", "retry": "never"},
        },
        "run": {"status_code": 409, "message": "step refused", "metadata": {"step": "odd"}},
    }


# ---------------------------------------------------------------- combinators and futures


async def test_gather_then_await_as_in_restates_examples(shared: Cluster, client: Client) -> None:
    assert await _ok(client, "/CompatSdk/squares", 6) == {
        "results": [0, 1, 4, 9, 16, 25],
        "pair_are_futures": True,
        "pair": [4, 9],
    }


async def test_isinstance_on_sleep_and_call_futures(shared: Cluster, client: Client) -> None:
    assert await _ok(client, "/CompatSdk/future_types") == {
        "sleep_is_sleep_future": True,
        "sleep_is_durable_future": True,
        "call_is_sleep_future": False,
        "call_is_call_future": True,
        "square": 16,
        "selected": 25,
    }


# ---------------------------------------------------------------- zero inactivity timeout


async def test_a_zero_inactivity_timeout_suspends_at_once(shared: Cluster, client: Client) -> None:
    key = uuid.uuid4().hex
    invocation_id = await client.send(f"/CompatWaiter/{key}/wait")

    async def published() -> Any:
        return (await client.call(f"/CompatWaiter/{key}/awakeable")).json()

    awakeable_id = await client.wait_for(published)

    async def suspended() -> bool:
        return bool((await client.invocation(invocation_id))["status"] == "suspended")

    # The default timeout (60 s) would keep the attempt open far beyond this wait.
    await client.wait_for(suspended, timeout_s=30.0)
    response = await client.call(f"/restate/awakeables/{awakeable_id}/resolve", "a note")
    assert response.status == 202, response.body
    response = await client.attach(invocation_id)
    assert response.status == 200 and response.json() == "woke with a note"
    status = await client.invocation(invocation_id)
    assert status["status"] == "completed" and status["attempt"] >= 2  # resumed by replay


# ---------------------------------------------------------------- description and metadata


async def test_admin_shows_documentation_and_metadata(shared: Cluster, client: Client) -> None:
    response = await client.admin("GET", "/services/CompatSdk")
    assert response.status == 200, response.body
    service = response.json()
    assert service["documentation"] == "restate-sdk style handlers"
    assert service["metadata"] == {"team": "compat"}
    square = next(h for h in service["handlers"] if h["name"] == "square")
    assert (square["documentation"], square["metadata"]) == ("The square of n.", {"pure": "yes"})
