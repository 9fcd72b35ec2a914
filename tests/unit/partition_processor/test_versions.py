"""Versions on the pure core: pinning an invocation to its first deployment, moving it."""

import msgspec

from partition_processor.actions import RespondToIngress, StartInvocation
from partition_processor.commands import (
    End,
    Failed,
    IngressSink,
    JournalAppend,
    MoveDeployment,
    Pinned,
    RetryPolicy,
    Suspended,
    TimerFired,
)
from partition_processor.journal import Failure, Output, Sleep, Success
from partition_processor.processor import PartitionProcessor
from partition_processor.store_memory import MemoryStore
from partition_processor.tables import Transaction, decode_status
from partition_processor.values import InvocationStatus
from tests.unit.partition_processor.env import GREETER, NODE, Env


def _pinned(env: Env, invocation_id: str = "a") -> str | None:
    status = env.status(invocation_id)
    assert status is not None
    return status.deployment_id


def test_the_first_attempt_pins_and_a_later_pin_changes_nothing() -> None:
    env = Env()
    env.invoke("a")
    assert _pinned(env) is None
    env.effect("a", 1, Pinned("dp_v1"))
    assert _pinned(env) == "dp_v1"
    # A repeated record, or a pin racing a move, never overrides the recorded deployment.
    assert env.effect("a", 1, Pinned("dp_v2")) == []
    assert _pinned(env) == "dp_v1"


def test_the_pin_survives_retries_and_suspension() -> None:
    env = Env()
    env.invoke("a", policy=RetryPolicy(initial_interval_ms=100))
    env.effect("a", 1, Pinned("dp_v1"))
    env.effect("a", 1, Failed(500, "boom", True))
    assert env.apply(TimerFired(env.now_ms + 100, "retry:a:1"), leader=True) == [
        StartInvocation("a", 2)
    ]
    assert _pinned(env) == "dp_v1"
    env.effect("a", 2, JournalAppend(1, Sleep(env.now_ms + 50)))
    env.effect("a", 2, Suspended([1]))
    env.apply(TimerFired(env.now_ms + 50, "sleep:a:1"), leader=True)
    status = env.status("a")
    assert status is not None and status.phase == "invoked" and status.attempt == 3
    assert status.deployment_id == "dp_v1"


def test_a_stale_attempt_cannot_pin() -> None:
    env = Env()
    env.invoke("a")
    assert env.effect("a", 2, Pinned("dp_v2")) == []
    assert _pinned(env) is None


def test_move_repins_an_unfinished_invocation_and_answers() -> None:
    env = Env()
    env.invoke("a")
    env.effect("a", 1, Pinned("dp_v1"))
    sink = IngressSink(NODE, "admin-1")
    actions = env.apply(MoveDeployment("a", "dp_v2", sink))
    # The running attempt is superseded by one on the new deployment.
    assert actions == [StartInvocation("a", 2), RespondToIngress(sink, "a", Success(b""))]
    assert _pinned(env) == "dp_v2"
    assert env.effect("a", 1, End()) == []  # the old attempt's effects are fenced off
    env.effect("a", 2, JournalAppend(1, Sleep(env.now_ms + 50)))
    env.effect("a", 2, Suspended([1]))
    # A suspended invocation just moves: its next resume runs on the new deployment.
    assert env.apply(MoveDeployment("a", "dp_v1", sink)) == [
        RespondToIngress(sink, "a", Success(b""))
    ]
    assert _pinned(env) == "dp_v1"


def test_move_of_unknown_or_completed_invocations_is_refused() -> None:
    env = Env()
    sink = IngressSink(NODE, "admin-1")
    [missing] = env.apply(MoveDeployment("nope", "dp_v2", sink))
    assert isinstance(missing, RespondToIngress) and isinstance(missing.result, Failure)
    assert missing.result.code == 404
    env.invoke("a", retention_ms=60_000)
    env.effect("a", 1, Pinned("dp_v1"))
    env.effect("a", 1, JournalAppend(1, Output(Success(b'"hi"'))))
    env.effect("a", 1, End())
    [done] = env.apply(MoveDeployment("a", "dp_v2", sink))
    assert isinstance(done.result, Failure) and done.result.code == 409  # type: ignore[union-attr]
    assert _pinned(env) == "dp_v1"


def test_followers_replaying_the_log_reach_the_same_pin() -> None:
    env = Env()
    env.invoke("a")
    env.effect("a", 1, Pinned("dp_v1"))
    env.apply(MoveDeployment("a", "dp_v2"))
    replica = MemoryStore()
    processor = PartitionProcessor(replica, 0, "node-b/1")
    from partition_processor.processor import LogEntry

    processor.apply_batch([LogEntry(lsn, env.record_at(lsn)) for lsn in range(env.lsn)])
    status = Transaction(replica, 0).status("a")
    assert status is not None and status.deployment_id == "dp_v2"


def test_a_status_stored_before_pinning_decodes_unpinned() -> None:
    status = InvocationStatus("a", GREETER, "suspended", 1, 2, attempt=1)
    old = msgspec.to_builtins(status)
    del old["deployment_id"]  # as written by a version without the field
    decoded = decode_status(msgspec.msgpack.encode(old))
    assert decoded.deployment_id is None and decoded.phase == "suspended"


def test_deployment_gone_fails_a_still_pinned_invocation_now() -> None:
    from partition_processor import codes
    from partition_processor.actions import AbortInvocation
    from partition_processor.commands import DeploymentGone

    env = Env()
    env.invoke("a", retention_ms=60_000)
    env.effect("a", 1, Pinned("dp_v1"))
    sink = IngressSink(NODE, "admin-1")
    # Pinned elsewhere (moved meanwhile): nothing happens.
    [elsewhere] = env.apply(DeploymentGone("a", "dp_v2", sink))
    assert isinstance(elsewhere.result, Failure) and elsewhere.result.code == 409  # type: ignore[union-attr]
    actions = env.apply(DeploymentGone("a", "dp_v1", sink))
    assert actions[0] == AbortInvocation("a")  # the running attempt stops
    [answer] = [a for a in actions if isinstance(a, RespondToIngress) and a.sink.request_id == "r1"]
    assert isinstance(answer.result, Failure) and answer.result.code == codes.DEPLOYMENT_GONE
    assert actions[-1] == RespondToIngress(sink, "a", Success(b""))
    status = env.status("a")
    assert status is not None and status.phase == "completed"
    assert env.effect("a", 1, End()) == []  # late effects of the stopped attempt change nothing
    [again] = env.apply(DeploymentGone("a", "dp_v1", sink))
    assert isinstance(again.result, Failure) and again.result.code == 404  # type: ignore[union-attr]
