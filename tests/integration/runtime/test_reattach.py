"""A waiting call re-attaches by invocation id, and never waits on a partition without a leader
(README, "How failover keeps replies"). The test plays the partition's leader: it reads what
the gateway appends to a real LocalLog and answers through ``PendingResponses``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from partition_processor.actions import RespondToIngress
from partition_processor.commands import Attach, Envelope, Invoke, Target, decode_envelope
from partition_processor.ids import parse_partition_key, partition_of
from partition_processor.journal import Failure, Success
from runtime.ingress.gateway import NoLeader, PendingResponses
from runtime.log import LocalLog
from runtime.metadata import HandlerInfo
from tests.support.gateways import bare_gateway

TARGET = Target("Greeter", "greet")
HANDLER = HandlerInfo("greet", "none")
PARTITIONS = 2


async def _record(log: LocalLog, partition: int, lsn: int) -> Envelope:
    """The record at ``lsn`` of ``partition`` (waits for it)."""
    reader = log.read(partition, lsn)
    try:
        batch = await asyncio.wait_for(anext(reader), 10)
    finally:
        await reader.aclose()  # type: ignore[attr-defined]
    return decode_envelope(batch[0].payload)


async def _invoke_in_log(log: LocalLog) -> tuple[int, Invoke]:
    for _ in range(1000):
        for partition in range(PARTITIONS):
            if await log.tail(partition) >= 1:
                command = (await _record(log, partition, 0)).command
                assert isinstance(command, Invoke)
                return partition, command
        await asyncio.sleep(0.01)
    raise AssertionError("no Invoke was appended")


async def test_a_call_no_leader_takes_gets_no_leader_with_its_id(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "log", PARTITIONS)
    await log.start()
    try:
        gateway = bare_gateway(log, PendingResponses(), leader_timeout_s=0.4)
        started = asyncio.get_running_loop().time()
        with pytest.raises(NoLeader) as refused:
            await gateway.call(TARGET, HANDLER, b'"x"', [], "key-1")
        assert asyncio.get_running_loop().time() - started >= 0.4
        partition, invoke = await _invoke_in_log(log)
        assert refused.value.invocation_id == invoke.invocation_id
        assert f"partition {partition} did not answer within 0.4 s" in refused.value.explanation
        # Halfway it probed the partition: a reading Attach nobody answered.
        probe = (await _record(log, partition, 1)).command
        assert isinstance(probe, Attach) and probe.invocation_id == invoke.invocation_id
        assert not probe.wait and probe.sink != invoke.sink
    finally:
        await log.close()


async def test_a_waiting_call_reattaches_at_a_leader_change_and_periodically(
    tmp_path: Path,
) -> None:
    log = LocalLog(tmp_path / "log", PARTITIONS)
    await log.start()
    try:
        responses = PendingResponses()
        gateway = bare_gateway(log, responses, leader_timeout_s=0.2, reattach_interval_s=1.0)
        call = asyncio.create_task(gateway.call(TARGET, HANDLER, b'"x"', [], None))
        partition, invoke = await _invoke_in_log(log)
        assert invoke.sink is not None and invoke.receipt_sink is None
        assert partition == partition_of(parse_partition_key(invoke.invocation_id), PARTITIONS)
        probe = (await _record(log, partition, 1)).command
        assert isinstance(probe, Attach) and not probe.wait
        not_ready = Failure(470, "the invocation has not completed yet")
        responses.respond(RespondToIngress(probe.sink, invoke.invocation_id, not_ready, True))
        await asyncio.sleep(0.3)  # a leader answered: the call waits on, past the leader timeout
        assert await log.tail(partition) == 2 and not call.done()
        responses.leader_changed(partition)  # at once: an Attach with the call's own sink
        attach = (await _record(log, partition, 2)).command
        assert attach == Attach(invoke.invocation_id, invoke.sink, True, max_attached=8)
        # Without any change, after the re-attach interval: another one (a lost delivery).
        again = (await _record(log, partition, 3)).command
        assert again == attach
        result = RespondToIngress(invoke.sink, invoke.invocation_id, Success(b'"hi"'))
        responses.respond(result)  # what the leader answers to the Attach
        assert await asyncio.wait_for(call, 10) == result
    finally:
        await log.close()


async def test_a_leader_change_before_any_answer_reattaches_at_once(tmp_path: Path) -> None:
    """The leader dies before it answers anything: the new leader's announcement makes the
    call re-attach at once (no waiting for the probe or the re-attach interval)."""
    log = LocalLog(tmp_path / "log", PARTITIONS)
    await log.start()
    try:
        responses = PendingResponses()
        gateway = bare_gateway(log, responses)  # leader timeout and interval: 600 s
        call = asyncio.create_task(gateway.call(TARGET, HANDLER, b'"x"', [], None))
        partition, invoke = await _invoke_in_log(log)
        assert invoke.sink is not None
        await asyncio.sleep(0.05)
        responses.leader_changed(partition)
        attach = (await _record(log, partition, 1)).command
        assert attach == Attach(invoke.invocation_id, invoke.sink, True, max_attached=8)
        result = RespondToIngress(invoke.sink, invoke.invocation_id, Success(b'"hi"'))
        responses.respond(result)
        assert await asyncio.wait_for(call, 10) == result
    finally:
        await log.close()


async def test_a_waiting_call_holds_no_task_of_its_own_until_something_is_due(
    tmp_path: Path,
) -> None:
    """Issue 10: until a probe or a re-attach is due, a call waits on its result and on the
    partition's leader change directly (it used to hold four tasks for that); a re-attach
    interval shorter than half the leader timeout still re-attaches on time."""
    log = LocalLog(tmp_path / "log", PARTITIONS)
    await log.start()
    try:
        responses = PendingResponses()
        gateway = bare_gateway(log, responses, reattach_interval_s=0.3)  # leader timeout: 600 s
        before = len(asyncio.all_tasks())
        call = asyncio.create_task(gateway.call(TARGET, HANDLER, b'"x"', [], None))
        partition, invoke = await _invoke_in_log(log)
        assert invoke.sink is not None
        await asyncio.sleep(0.05)
        assert len(asyncio.all_tasks()) == before + 1  # the call itself
        attach = (await _record(log, partition, 1)).command  # after the interval, no probe
        assert attach == Attach(invoke.invocation_id, invoke.sink, True, max_attached=8)
        result = RespondToIngress(invoke.sink, invoke.invocation_id, Success(b'"hi"'))
        responses.respond(result)
        assert await asyncio.wait_for(call, 10) == result
    finally:
        await log.close()
