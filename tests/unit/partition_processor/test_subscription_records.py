"""Records a Kafka subscription appends: a rejected event becomes a failed invocation, and a
record appended twice (re-read after a crash or a rebalance) is applied once."""

from __future__ import annotations

from partition_processor.actions import RespondToIngress, StartInvocation
from partition_processor.commands import (
    Envelope,
    IngressSink,
    Invoke,
    ProducerDedup,
    SubscriptionSource,
    encode_envelope,
)
from partition_processor.ids import parse_partition_key, subscription_invocation_id
from partition_processor.journal import Failure
from tests.unit.partition_processor.env import COUNTER, NODE, Env


def _record(env: Env, invoke: Invoke, offset: int) -> bytes:
    dedup = ProducerDedup("sub:sub_1:events:0", offset)
    return encode_envelope(Envelope(SubscriptionSource("sub_1"), env.now_ms, invoke, dedup))


def test_rejected_invoke_is_kept_as_a_failed_invocation_and_answers_its_sink() -> None:
    env = Env()
    failure = Failure(400, "record events/0/7 has no key, but Counter/add needs one")
    sink = IngressSink(NODE, "r1")
    invoke = Invoke(
        "bad", COUNTER, b"", sink=sink, completion_retention_ms=60_000, rejected=failure
    )
    actions = env.apply_raw(_record(env, invoke, 7))
    assert RespondToIngress(sink, "bad", failure, target=COUNTER) in actions
    assert not any(isinstance(a, StartInvocation) for a in actions)
    status = env.status("bad")
    assert status is not None and status.phase == "completed" and status.result == failure
    # it took no lock: the next event of the key runs at once
    assert env.tx().lock_holder("Counter", "k1") is None
    good = Invoke("good", COUNTER, b"1")
    assert env.apply_raw(_record(env, good, 8)) == [StartInvocation("good", 1)]


def test_a_record_appended_twice_is_applied_once() -> None:
    env = Env()
    first = Invoke("a", COUNTER, b"1")
    second = Invoke("b", COUNTER, b"2")
    env.apply_raw(_record(env, first, 0), _record(env, second, 1))
    # the same two records again (a consumer that re-read them): nothing happens
    assert env.apply_raw(_record(env, first, 0), _record(env, second, 1)) == []
    assert env.status("b").phase == "inboxed"  # type: ignore[union-attr]


def test_subscription_invocation_ids_are_a_function_of_the_record_position() -> None:
    one = subscription_invocation_id("sub_1", "events", 2, 40, "Counter", "k")
    assert one == subscription_invocation_id("sub_1", "events", 2, 40, "Counter", "k")
    assert one != subscription_invocation_id("sub_1", "events", 2, 41, "Counter", "k")
    assert one != subscription_invocation_id("sub_2", "events", 2, 40, "Counter", "k")
    keyed = subscription_invocation_id("sub_1", "events", 0, 1, "Counter", "k")
    other = subscription_invocation_id("sub_1", "events", 5, 9, "Counter", "k")
    assert parse_partition_key(keyed) == parse_partition_key(other)  # one key, one partition
