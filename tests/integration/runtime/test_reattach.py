"""A waiting call re-attaches by invocation id, and never waits on a partition without a leader
(README, "How failover keeps replies"). The test plays the partition's leader: it reads what
the gateway appends to a real LocalLog and answers through ``PendingResponses``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from partition_processor.actions import RespondToIngress, SendReceipt
from partition_processor.commands import Attach, Envelope, Invoke, Target, decode_envelope
from partition_processor.ids import parse_partition_key, partition_of
from partition_processor.journal import Success
from runtime.ingress.gateway import InvocationGateway, NoLeader, PendingResponses
from runtime.log import LocalLog
from runtime.metadata import HandlerInfo

TARGET = Target("Greeter", "greet")
HANDLER = HandlerInfo("greet", "none")
PARTITIONS = 2


def _gateway(log: LocalLog, responses: PendingResponses, **timeouts: float) -> InvocationGateway:
    return InvocationGateway(
        log,
        "node-a",
        responses,
        max_record_bytes=1 << 20,
        max_attached=8,
        receipt_timeout_s=600,
        leader_timeout_s=timeouts.get("leader_timeout_s", 600),
        reattach_interval_s=timeouts.get("reattach_interval_s", 600),
    )


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
            if await log.tail(partition) == 1:
                command = (await _record(log, partition, 0)).command
                assert isinstance(command, Invoke)
                return partition, command
        await asyncio.sleep(0.01)
    raise AssertionError("no Invoke was appended")


async def test_a_call_no_leader_takes_gets_no_leader_with_its_id(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "log", PARTITIONS)
    await log.start()
    try:
        gateway = _gateway(log, PendingResponses(), leader_timeout_s=0.3)
        with pytest.raises(NoLeader) as refused:
            await gateway.call(TARGET, HANDLER, b'"x"', [], "key-1")
        partition, invoke = await _invoke_in_log(log)
        assert refused.value.invocation_id == invoke.invocation_id
        assert f"partition {partition} did not answer within 0.3 s" in refused.value.explanation
        assert invoke.receipt_sink is not None and invoke.sink is not None
    finally:
        await log.close()


async def test_a_waiting_call_reattaches_at_a_leader_change_and_periodically(
    tmp_path: Path,
) -> None:
    log = LocalLog(tmp_path / "log", PARTITIONS)
    await log.start()
    try:
        responses = PendingResponses()
        gateway = _gateway(log, responses, reattach_interval_s=1.0)
        call = asyncio.create_task(gateway.call(TARGET, HANDLER, b'"x"', [], None))
        partition, invoke = await _invoke_in_log(log)
        assert invoke.sink is not None and invoke.receipt_sink is not None
        assert partition == partition_of(parse_partition_key(invoke.invocation_id), PARTITIONS)
        receipt = RespondToIngress(
            invoke.receipt_sink, invoke.invocation_id, Success(b""), receipt=SendReceipt(True, 0)
        )
        responses.respond(receipt)  # a leader took it: the call now waits for the result
        await asyncio.sleep(0.1)
        assert await log.tail(partition) == 1 and not call.done()
        responses.leader_changed(partition)  # at once: an Attach with the call's own sink
        attach = (await _record(log, partition, 1)).command
        assert attach == Attach(invoke.invocation_id, invoke.sink, True, max_attached=8)
        # Without any change, after the re-attach interval: another one (a lost delivery).
        again = (await _record(log, partition, 2)).command
        assert again == attach
        result = RespondToIngress(invoke.sink, invoke.invocation_id, Success(b'"hi"'))
        responses.respond(result)  # what the leader answers to the Attach
        assert await asyncio.wait_for(call, 10) == result
    finally:
        await log.close()
