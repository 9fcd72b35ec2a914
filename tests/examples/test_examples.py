"""Each example app of examples/ through sdk.testing (an embedded node, the app in-process)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from examples import awakeables, calls, messaging, state, steps, workflows
from sdk.testing import CallFailed, TestEnvironment


async def test_a_durable_step_runs_once_per_idempotent_call() -> None:
    async with TestEnvironment(steps.app) as env:
        before = len(steps.CHARGES)
        first = await env.client.call("Payments", "pay", {"amount": 5}, idempotency_key="p1")
        again = await env.client.call("Payments", "pay", {"amount": 5}, idempotency_key="p1")
        assert first == again  # the same transaction and receipt: not charged twice
        assert steps.CHARGES[before:] == [{"transaction": first["transaction"], "amount": 5}]


async def test_state_is_kept_per_key_and_cleared() -> None:
    async with TestEnvironment(state.app) as env:
        assert await env.client.call("Counter", "add", 2, key="a") == 2
        assert await env.client.call("Counter", "add", 3, key="a") == 5
        assert await env.client.call("Counter", "add", 1, key="b") == 1
        assert await env.client.state("Counter", "a") == {"total": 5}
        assert await env.client.call("Counter", "get", key="a") == 5
        await env.client.call("Counter", "reset", key="a")
        assert await env.client.state("Counter", "a") == {}
        assert await env.client.state("Counter", "b") == {"total": 1}


async def test_a_call_waits_for_the_object_answer() -> None:
    async with TestEnvironment(calls.app) as env:
        assert await env.client.call("Greeter", "greet", "Ada") == "Hello, Ada! (visit 1)"
        assert await env.client.call("Greeter", "greet", "Ada") == "Hello, Ada! (visit 2)"
        assert await env.client.state("Visits", "Ada") == {"seen": 2}


async def test_a_delayed_send_arrives_once_the_clock_is_advanced() -> None:
    async with TestEnvironment(messaging.app) as env:
        address = "ada@example.com"
        assert await env.client.call("Signup", "register", address) == "registered"

        async def inbox(expected: list[str]) -> None:
            async def arrived() -> bool:
                return (await env.client.state("Mailbox", address)).get("inbox") == expected

            await env.wait_for(arrived)

        await inbox(["welcome"])
        await asyncio.sleep(0.3)  # the delayed one waits for its day, not for the test
        assert (await env.client.state("Mailbox", address))["inbox"] == ["welcome"]
        await env.advance(timedelta(days=1))
        await inbox(["welcome", "how is it going?"])


async def test_a_workflow_waits_for_its_promise_resolved_by_a_signal() -> None:
    async with TestEnvironment(workflows.app) as env:
        await env.client.send("Onboarding", "run", "ada@example.com", key="ada")

        async def waiting() -> bool:
            return await env.client.call("Onboarding", "status", key="ada") == (
                "waiting for confirmation"
            )

        await env.wait_for(waiting)
        await env.client.call("Onboarding", "confirm", "secret", key="ada")
        assert await env.client.workflow_output("Onboarding", "ada") == "ada@example.com confirmed"
        assert await env.client.call("Onboarding", "status", key="ada") == "confirmed"

        await env.client.send("Onboarding", "run", "bob@example.com", key="bob")
        await env.wait_for(
            lambda: _equals(
                env.client.call("Onboarding", "status", key="bob"), "waiting for confirmation"
            )
        )
        await env.client.call("Onboarding", "confirm", "guess", key="bob")
        with pytest.raises(CallFailed) as failed:
            await env.client.workflow_output("Onboarding", "bob")
        assert "wrong confirmation" in failed.value.message


async def _equals(value: object, expected: object) -> bool:
    return await value == expected  # type: ignore[misc]


async def test_an_awakeable_is_resolved_or_rejected_from_outside() -> None:
    async with TestEnvironment(awakeables.app) as env:
        outcomes = []
        for decide in ("resolve", "reject"):
            key = f"doc-{decide}"
            invocation_id = await env.client.send("Approvals", "request", key=key)

            async def published(key: str = key) -> bool:
                return "awakeable" in await env.client.state("Approvals", key)

            await env.wait_for(published)
            awakeable_id = (await env.client.state("Approvals", key))["awakeable"]
            if decide == "resolve":
                await env.client.resolve_awakeable(awakeable_id, "ok by Ada")
            else:
                await env.client.reject_awakeable(awakeable_id, "too late")
            outcomes.append(await env.client.attach(invocation_id))
            assert await env.client.state("Approvals", key) == {}
        assert outcomes == ["ok by Ada", "rejected: too late"]
