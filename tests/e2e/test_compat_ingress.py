"""Restate compatibility of the ingress and admin APIs, on the local log and on Kafka.

Each test sends what a client written for Restate 1.7 sends and asserts Restate's answer: its
status codes, headers and body shapes (from Restate's ingress and admin code). The services are
written exactly as for restate-sdk (tests/e2e/apps/compat_ingress.py, ``import restate``).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.conftest import Cluster
from tests.e2e.harness import Client, Response

APP = "tests.e2e.apps.compat_ingress:app"

JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}  # what `curl -d` sends


def _key() -> str:
    return uuid.uuid4().hex[:12]


def _ingress_error(response: Response, status: int) -> str:
    """Restate's ingress error: the status, ``{"code", "message", "source": "ingress"}`` and the
    ``x-restate-error-source`` header; returns the message."""
    assert response.status == status, (response.status, response.body)
    body = response.json()
    assert body == {"code": status, "message": body["message"], "source": "ingress"}, body
    assert response.headers["x-restate-error-source"] == "ingress"
    assert response.headers["content-type"].startswith("application/json")
    message: str = body["message"]
    return message


async def _count(client: Client, key: str) -> Any:
    response = await client.call(f"/greeter/{key}/count", method="GET")
    assert response.status == 200, response.body
    return response.json()


# ---------------------------------------------------------------- 1. raw handlers


async def test_a_raw_handler_gets_the_body_as_sent_and_answers_with_its_content_type(
    shared: Cluster, client: Client
) -> None:
    payload = b"\x00\xffnot json at all{"
    response = await client.call(
        "/raw/reverse", raw=payload, headers={"content-type": "application/octet-stream"}
    )
    assert response.status == 200, response.body
    assert response.body == payload[::-1]
    assert response.headers["content-type"] == "application/octet-stream"
    # accept */*: any content type passes, and nothing parses the body as JSON.
    labelled_json = await client.call("/raw/reverse", raw=b"{oops", headers=JSON)
    assert (labelled_json.status, labelled_json.body) == (200, b"spoo{")
    text = await client.call(
        "/raw/shout", raw=b"quiet", headers={"content-type": "text/plain; charset=utf-8"}
    )
    assert (text.status, text.body) == (200, b"QUIET")
    assert text.headers["content-type"] == "text/plain"


async def test_a_raw_handler_refuses_a_content_type_it_does_not_accept(
    shared: Cluster, client: Client
) -> None:
    response = await client.call("/raw/shout", raw=b'"quiet"', headers=JSON)
    message = _ingress_error(response, 400)
    assert message == (
        "input validation error: Content-type 'application/json' does not match 'text/*'"
    )


async def test_an_awakeable_is_resolved_with_the_bytes_as_sent(
    shared: Cluster, client: Client
) -> None:
    key = _key()
    invocation_id = await client.send(f"/mailbox/{key}/receive")

    async def awakeable_id() -> Any:
        state = (await client.admin("GET", f"/services/mailbox/state/{key}")).json()["state"]
        return state.get("awakeable")

    letter = b"\x00\x01 not json"
    resolved = await client.call(
        f"/restate/awakeables/{await client.wait_for(awakeable_id)}/resolve",
        raw=letter,
        headers={"content-type": "application/octet-stream"},
    )
    assert (resolved.status, resolved.body) == (202, b"")
    result = await client.attach(invocation_id)
    assert (result.status, result.body) == (200, letter)
    assert result.headers["content-type"] == "application/octet-stream"


async def test_the_admin_api_shows_each_handlers_content_types(
    shared: Cluster, client: Client
) -> None:
    response = await client.admin("GET", "/services/raw")
    assert response.status == 200, response.body
    handlers = {h["name"]: h for h in response.json()["handlers"]}
    assert handlers["reverse"]["input"] == {
        "required": False,
        "content_type": "*/*",
        "non_empty": True,
        "json": False,
    }
    assert handlers["reverse"]["output"] == {
        "content_type": "application/octet-stream",
        "set_content_type_if_empty": False,
    }
    assert handlers["shout"]["input"]["content_type"] == "text/*"
    greeter = {
        h["name"]: h for h in (await client.admin("GET", "/services/greeter")).json()["handlers"]
    }
    assert greeter["ungreet"]["input"]["content_type"] is None  # takes no input
    assert greeter["greet"]["input"]["json"] is True


# ---------------------------------------------------------------- 2. input validation


async def test_a_body_sent_to_a_handler_without_input_is_refused_and_nothing_runs(
    shared: Cluster, client: Client
) -> None:
    key = _key()
    greeted = await client.call(f"/greeter/{key}/greet", "mary")
    assert greeted.status == 200, greeted.body
    # curl http://127.0.0.1:8080/greeter/mary/ungreet -d '{}'
    response = await client.call(f"/greeter/{key}/ungreet", raw=b"{}", headers=FORM)
    assert "x-restate-id" not in response.headers  # refused before any invocation exists
    assert _ingress_error(response, 400) == (
        "input validation error: Expected body and content-type to be empty, but wasn't "
        "with content-type 'Some(\"application/x-www-form-urlencoded\")'"
    )
    # Even a JSON body, even a content-type alone: a handler without input takes neither.
    for raw in (b"{}", b""):
        refused = await client.call(f"/greeter/{key}/ungreet", raw=raw, headers=JSON)
        assert 'Some("application/json")' in _ingress_error(refused, 400)
    no_type = await client.call(f"/greeter/{key}/ungreet", raw=b"{}")
    assert "content-type 'None'" in _ingress_error(no_type, 400)
    assert await _count(client, key) == 1  # ungreet never ran
    listed = await client.admin("GET", "/invocations")
    targets = [row["target"] for row in listed.json()["invocations"]]
    assert f"greeter/{key}/ungreet" not in targets
    # Without a body it runs.
    ungreeted = await client.call(f"/greeter/{key}/ungreet")
    assert ungreeted.status == 200, ungreeted.body
    assert await _count(client, key) == 0


async def test_a_content_type_the_handler_does_not_accept_is_refused(
    shared: Cluster, client: Client
) -> None:
    key = _key()
    # curl http://127.0.0.1:8080/greeter/mary/greet -d '"Ada"' (no -H content-type)
    response = await client.call(f"/greeter/{key}/greet", raw=b'"Ada"', headers=FORM)
    assert _ingress_error(response, 400) == (
        "input validation error: Content-type 'application/x-www-form-urlencoded' "
        "does not match 'application/json'"
    )
    no_type = await client.call(f"/greeter/{key}/greet", raw=b'"Ada"')
    assert _ingress_error(no_type, 400) == "input validation error: Empty content-type"
    empty = await client.call(f"/greeter/{key}/greet", raw=b"", headers=JSON)
    assert _ingress_error(empty, 400) == "input validation error: Empty body not allowed"
    assert await _count(client, key) == 0  # nothing ran
    # Parameters of the content type do not matter; no body and no content-type is None.
    charset = await client.call(
        f"/greeter/{key}/greet",
        raw=b'"Ada"',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert (charset.status, charset.json()) == (200, "Hello Ada for the 1-th time!")
    nothing = await client.call("/plain/echo")
    assert (nothing.status, nothing.body) == (200, b"")


async def test_malformed_json_for_a_json_handler_is_refused_before_it_runs(
    shared: Cluster, client: Client
) -> None:
    """A deliberate difference (README): Restate lets it through and the SDK fails it."""
    key = _key()
    response = await client.call(f"/greeter/{key}/greet", raw=b'{"name": ', headers=JSON)
    assert _ingress_error(response, 400).startswith(
        "input validation error: the body is not valid JSON"
    )
    assert await _count(client, key) == 0


# ---------------------------------------------------------------- 3. GET


async def test_get_invokes_handlers_without_a_body(shared: Cluster, client: Client) -> None:
    key = _key()
    ping = await client.call("/plain/ping", method="GET")
    assert (ping.status, ping.json()) == (200, "pong")
    assert ping.headers["x-restate-id"].startswith("inv_")
    assert ping.headers["content-type"] == "application/json"
    assert (await client.call(f"/greeter/{key}/greet", "Ada")).status == 200
    assert await _count(client, key) == 1  # GET /greeter/{key}/count
    # An exclusive handler too, and a handler with an optional input gets none.
    ungreet = await client.call(f"/greeter/{key}/ungreet", method="GET")
    assert ungreet.status == 200, ungreet.body
    echo = await client.call("/plain/echo", method="GET")
    assert (echo.status, echo.body) == (200, b"")
    sent = await client.call("/plain/ping/send", method="GET")
    assert sent.status == 202, sent.body
    # Other methods are refused once the handler is known, as Restate does.
    assert _ingress_error(await client.call("/plain/ping", method="PUT"), 405) == (
        "method not allowed"
    )
    missing = await client.call("/plain/nope", method="GET")
    assert "handler 'nope' was not found" in _ingress_error(missing, 404)


# ---------------------------------------------------------------- 4. 202 bodies


async def test_a_repeated_send_is_previously_accepted(shared: Cluster, client: Client) -> None:
    headers = {"idempotency-key": _key()}
    first = await client.call("/plain/ping/send", headers=headers)
    assert first.status == 202, first.body
    invocation_id = first.headers["x-restate-id"]
    assert first.json() == {"invocationId": invocation_id, "status": "Accepted"}
    again = await client.call("/plain/ping/send", headers=headers)
    assert again.status == 202, again.body
    assert again.json() == {"invocationId": invocation_id, "status": "PreviouslyAccepted"}

    key = _key()
    run = await client.call(f"/signup/{key}/run/send", "ada@example.com")
    assert run.status == 202 and run.json()["status"] == "Accepted", run.body
    rerun = await client.call(f"/signup/{key}/run/send", "bob@example.com")
    assert rerun.json() == {
        "invocationId": run.json()["invocationId"],
        "status": "PreviouslyAccepted",
    }
    assert (await client.call(f"/signup/{key}/click", "link-1")).status == 200
    attached = await client.call(f"/restate/workflow/signup/{key}/attach", method="GET")
    assert (attached.status, attached.json()) == (200, "ada@example.com verified with link-1")


async def test_a_delayed_send_says_when_it_will_run(shared: Cluster, client: Client) -> None:
    before = time.time()
    response = await client.call("/plain/ping/send?delay=1h", headers={"idempotency-key": _key()})
    after = time.time()
    assert response.status == 202, response.body
    body = response.json()
    assert list(body) == ["invocationId", "executionTime", "status"]
    assert body["status"] == "Accepted"
    text = body["executionTime"]
    # RFC 3339 in UTC, as Restate prints it: whole seconds, or nine fractional digits.
    assert text.endswith("Z") and len(text) in (20, 30), text
    at = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    assert before + 3600 - 1 <= at <= after + 3600 + 1, (text, before, after)
    undelayed = await client.call("/plain/ping/send")
    assert "executionTime" not in undelayed.json()
    call_with_delay = await client.call("/plain/ping?delay=10s")
    assert "delay is supported only with sends" in _ingress_error(call_with_delay, 400)


async def test_a_repeated_delayed_send_reports_the_first_execution_time(
    shared: Cluster, client: Client
) -> None:
    headers = {"idempotency-key": _key()}
    first = await client.call("/plain/ping/send?delay=2h", headers=headers)
    again = await client.call("/plain/ping/send?delay=5h", headers=headers)
    assert again.json() == {
        "invocationId": first.json()["invocationId"],
        "executionTime": first.json()["executionTime"],
        "status": "PreviouslyAccepted",
    }


# ---------------------------------------------------------------- 5. error bodies and outputs


async def test_error_bodies_say_who_failed(shared: Cluster, client: Client) -> None:
    failed = await client.call("/plain/refuse", "no reason")
    assert failed.status == 422
    assert failed.json() == {"code": 422, "message": "refused: no reason", "source": "invocation"}
    assert failed.headers["x-restate-error-source"] == "invocation"
    assert failed.headers["x-restate-id"].startswith("inv_")
    unknown = await client.call("/nope/ping")
    assert _ingress_error(unknown, 404) == (
        "service 'nope' not found, make sure to register the service before calling it."
    )
    not_ready = await client.call("/plain/ping/send?delay=1h", headers={"idempotency-key": _key()})
    output = await client.call(
        f"/restate/invocation/{not_ready.json()['invocationId']}/output", method="GET"
    )
    _ingress_error(output, 470)
    idempotent_workflow = await client.call(
        f"/signup/{_key()}/run", "a@b.c", headers={"idempotency-key": "k"}
    )
    assert "idempotency key with workflow handlers" in _ingress_error(idempotent_workflow, 400)


async def test_outputs_carry_the_handlers_content_type_or_none(
    shared: Cluster, client: Client
) -> None:
    nothing = await client.call("/plain/nothing")
    assert (nothing.status, nothing.body) == (200, b"")
    assert "content-type" not in nothing.headers
    echo = await client.call("/plain/echo", {"a": 1})
    assert (echo.status, echo.json()) == (200, {"a": 1})
    assert echo.headers["content-type"] == "application/json"
    # An attached result has its handler's content type too.
    sent = await client.call("/raw/reverse/send", raw=b"abc", headers={"content-type": "x/y"})
    attached = await client.attach(sent.json()["invocationId"])
    assert (attached.status, attached.body) == (200, b"cba")
    assert attached.headers["content-type"] == "application/octet-stream"


# ---------------------------------------------------------------- 6. admin


async def _holding(client: Client) -> tuple[str, str]:
    """An invocation holding a key's lock (sleeping) and one queued behind it."""
    key = _key()
    holder = await client.send(f"/greeter/{key}/hold")

    async def running() -> bool:
        status = await client.invocation(holder)
        return bool(status["journal"] and status["journal"][-1]["command"] == "sleep")

    await client.wait_for(running)
    queued = await client.send(f"/greeter/{key}/ungreet")
    await client.wait_for(lambda: _phase_is(client, queued, "inboxed"))
    return holder, queued


async def _phase_is(client: Client, invocation_id: str, phase: str) -> bool:
    return bool((await client.invocation(invocation_id))["status"] == phase)


async def test_cancel_answers_202_when_signalled_and_200_when_done(
    shared: Cluster, client: Client
) -> None:
    holder, queued = await _holding(client)
    done = await client.admin("PATCH", f"/invocations/{queued}/cancel")
    assert (done.status, done.body) == (200, b"")
    signalled = await client.admin("PATCH", f"/invocations/{holder}/cancel")
    assert (signalled.status, signalled.body) == (202, b"")
    for invocation_id in (holder, queued):
        result = await client.attach(invocation_id)
        assert result.status == 409, result.body
        assert result.json()["source"] == "invocation"
    again = await client.admin("PATCH", f"/invocations/{holder}/cancel")
    assert again.status == 409, again.body


async def test_kill_and_purge_answer_200_with_no_body(shared: Cluster, client: Client) -> None:
    holder, queued = await _holding(client)
    killed = await client.admin("PATCH", f"/invocations/{holder}/kill")
    assert (killed.status, killed.body) == (200, b"")
    assert (await client.attach(queued)).status == 200  # the lock went with the kill
    assert (await client.admin("PATCH", f"/invocations/{holder}/kill")).status == 409
    headers = {"idempotency-key": _key()}
    completed = await client.call("/plain/ping", headers=headers)
    purged = await client.admin("PATCH", f"/invocations/{completed.headers['x-restate-id']}/purge")
    assert (purged.status, purged.body) == (200, b"")
    gone = await client.admin("PATCH", f"/invocations/{completed.headers['x-restate-id']}/purge")
    assert gone.status == 404
    unknown = "inv_" + "0" * 48
    assert (await client.admin("PATCH", f"/invocations/{unknown}/kill")).status == 404


@pytest.mark.parametrize("mode", ["kill", "cancel"])
async def test_the_older_delete_api_answers_202(shared: Cluster, client: Client, mode: str) -> None:
    holder, queued = await _holding(client)
    response = await client.admin("DELETE", f"/invocations/{holder}?mode={mode}")
    assert (response.status, response.body) == (202, b"")
    result = await client.attach(holder)
    outcome = {"kill": "killed", "cancel": "cancelled"}[mode]
    assert (result.status, result.json()["message"]) == (409, outcome)
    assert (await client.attach(queued)).status == 200
    bad = await client.admin("DELETE", f"/invocations/{holder}?mode=explode")
    assert bad.status == 400


async def test_delete_purges_a_completed_invocation(shared: Cluster, client: Client) -> None:
    completed = await client.call("/plain/ping", headers={"idempotency-key": _key()})
    invocation_id = completed.headers["x-restate-id"]
    response = await client.admin("DELETE", f"/invocations/{invocation_id}?mode=purge")
    assert (response.status, response.body) == (202, b"")

    async def purged() -> bool:
        return (await client.admin("GET", f"/invocations/{invocation_id}")).status == 404

    await client.wait_for(purged)
