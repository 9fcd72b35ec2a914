"""Fault points fail a step the given number of times; health reports the failing tasks of
the partitions this node owns (and node-wide ones), and the node's phase."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from runtime.faults import FaultPoints, InjectedFault
from runtime.health import NodeHealth
from runtime.ingress.gateway import ShuttingDown
from runtime.ingress.http import health_response, shutting_down_response
from runtime.supervisor import Supervisor


def test_a_fault_point_fails_n_times_after_k_passes() -> None:
    points = FaultPoints("outbox.ship:2:1, timers.fire")
    outcomes = []
    for _ in range(5):
        try:
            points.hit("outbox.ship")
            outcomes.append("ok")
        except InjectedFault as exc:
            outcomes.append(str(exc))
    assert outcomes == [
        "ok",
        "injected fault at outbox.ship",
        "injected fault at outbox.ship",
        "ok",
        "ok",
    ]
    with pytest.raises(InjectedFault):
        points.hit("timers.fire")  # N defaults to 1
    points.hit("timers.fire")
    points.hit("leader.announce")  # not named: never fails


@pytest.mark.parametrize("spec", ["outbox.ship:x", "outbox.ship:1:2:3", ":3"])
def test_a_bad_fault_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="CAIRN_FAULT_AT"):
        FaultPoints(spec)


async def test_health_names_the_failing_tasks_of_owned_partitions_and_node_wide_ones() -> None:
    supervisor = Supervisor(initial_backoff=timedelta(seconds=60))
    owned = {1, 3}
    health = NodeHealth(supervisor, lambda p: p in owned, retry_after_s=1)

    async def failing() -> None:
        raise ValueError("bad row")

    assert health.problem() == {
        "code": 503,
        "message": "the node is starting",
        "partitions": [],
        "tasks": [],
    }
    assert health.refusal() == "the node is starting"
    health.phase = "serving"
    assert health.problem() is None and health.refusal() is None

    supervisor.spawn("partition-2/outbox", failing, partition=2)  # led by another node
    supervisor.spawn("partition-3/outbox", failing, partition=3)
    supervisor.spawn("metadata-follower", failing)
    await asyncio.sleep(0.05)
    problem = health.problem()
    assert problem is not None
    assert problem["message"] == (
        "metadata-follower restarting after ValueError: bad row; "
        "partition 3 is not being served: outbox restarting after ValueError: bad row"
    )
    assert problem["partitions"] == [3]
    assert [t["name"] for t in problem["tasks"]] == ["metadata-follower", "partition-3/outbox"]
    assert health.refusal() is None  # requests are still taken: they run once it recovers

    health.phase = "stopping"
    assert health.problem() == {
        "code": 503,
        "message": "the node is shutting down",
        "partitions": [],
        "tasks": [],
    }
    assert health.refusal() == "the node is shutting down"
    await supervisor.shutdown()


async def test_health_and_shutdown_503s_carry_the_configured_retry_after() -> None:
    """``--retry-after-s`` (NodeConfig.retry_after_s) reaches every 503, not only the bounds'."""
    supervisor = Supervisor(initial_backoff=timedelta(seconds=60))
    health = NodeHealth(supervisor, lambda _: True, retry_after_s=7)
    starting = health_response(health)
    assert (starting.status, starting.headers["Retry-After"]) == (503, "7")

    health.phase = "serving"
    assert health_response(health).status == 200

    async def failing() -> None:
        raise ValueError("bad row")

    supervisor.spawn("metadata-follower", failing)
    await asyncio.sleep(0.05)
    unhealthy = health_response(health, source="ingress")
    assert (unhealthy.status, unhealthy.headers["Retry-After"]) == (503, "7")

    for stopping in (ShuttingDown(), ShuttingDown("inv_1")):
        answer = shutting_down_response(stopping, health.retry_after_s)
        assert (answer.status, answer.headers["Retry-After"]) == (503, "7")


async def test_a_task_that_does_not_affect_health_is_listed_but_leaves_it_200() -> None:
    """A failing subscription consumer: health stays 200 and names it; its metric label is its
    kind, not its name (one label for every subscription)."""
    supervisor = Supervisor(initial_backoff=timedelta(seconds=60))
    health = NodeHealth(supervisor, lambda p: True, retry_after_s=1)
    health.phase = "serving"

    async def failing() -> None:
        raise ConnectionError("broker down")

    consumer = supervisor.spawn(
        "subscription-sub_1", failing, affects_health=False, kind="subscription"
    )
    await asyncio.sleep(0.05)
    assert consumer.label == "subscription" and consumer.failures == 1
    assert health.problem() is None
    assert health.degraded() == [
        {
            "name": "subscription-sub_1",
            "reason": "subscription restarting after ConnectionError: broker down",
        }
    ]
    supervisor.spawn("metadata-follower", failing)  # one that does make the node unhealthy
    await asyncio.sleep(0.05)
    problem = health.problem()
    assert problem is not None
    assert problem["message"] == "metadata-follower restarting after ConnectionError: broker down"
    assert [t["name"] for t in problem["tasks"]] == ["metadata-follower", "subscription-sub_1"]
    await supervisor.shutdown()


async def test_an_unreachable_log_makes_health_503_naming_it_and_green_again() -> None:
    problems: list[str] = []
    health = NodeHealth(
        Supervisor(), lambda _: True, retry_after_s=1, log_problems=lambda: problems
    )
    health.phase = "serving"
    assert health.problem() is None
    problems.append("the log is unreachable: Kafka (c.log at k:9092) has not answered for 6 s")
    problem = health.problem()
    assert problem is not None and problem["code"] == 503
    assert problem["message"] == problems[0]
    response = health_response(health, source="ingress")
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    problems.clear()
    assert health.problem() is None
