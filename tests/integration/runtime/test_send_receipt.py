"""A one-way request does not hang when its receipt is lost (the e2e suites show the receipt's
normal path: ``Accepted`` / ``PreviouslyAccepted`` in tests/e2e/test_compat_ingress.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from partition_processor.actions import SendReceipt
from partition_processor.commands import Target
from partition_processor.ids import parse_partition_key, partition_of
from runtime.ingress.gateway import PendingResponses, ShuttingDown
from runtime.log import LocalLog
from runtime.metadata import HandlerInfo
from tests.support.gateways import bare_gateway

TARGET = Target("Greeter", "greet")
HANDLER = HandlerInfo("greet", "none")


async def test_a_send_without_a_receipt_is_accepted_once_its_record_is_durable(
    tmp_path: Path,
) -> None:
    """No partition processor runs here: the receipt never comes (as across a failover)."""
    log = LocalLog(tmp_path / "log", 2)
    await log.start()
    try:
        gateway = bare_gateway(log, receipt_timeout_s=0.2)
        invocation_id, receipt = await gateway.send(TARGET, HANDLER, b'"x"', [], "key-1")
        assert receipt == SendReceipt(True, 0)
        partition = partition_of(parse_partition_key(invocation_id), 2)
        assert await log.tail(partition) == 1  # the Invoke is in the log all the same
    finally:
        await log.close()


async def test_a_send_waiting_for_its_receipt_when_the_node_stops_is_accepted(
    tmp_path: Path,
) -> None:
    """Its Invoke is durable: ``Accepted``, not a 503 that would invite a duplicate. A send that
    comes after the stop is refused and appends nothing."""
    log = LocalLog(tmp_path / "log", 2)
    await log.start()
    try:
        responses = PendingResponses()
        gateway = bare_gateway(log, responses)
        sending = asyncio.create_task(gateway.send(TARGET, HANDLER, b'"x"', [], "key-1"))
        for _ in range(1000):  # until the Invoke is in the log (the receipt never comes)
            if sum([await log.tail(p) for p in range(2)]) == 1:
                break
            await asyncio.sleep(0.01)
        assert not sending.done()
        responses.shut_down()
        invocation_id, receipt = await asyncio.wait_for(sending, 10)
        assert receipt == SendReceipt(True, 0)
        assert await log.tail(partition_of(parse_partition_key(invocation_id), 2)) == 1
        with pytest.raises(ShuttingDown) as refused:
            await gateway.send(TARGET, HANDLER, b'"y"', [], "key-2")
        assert refused.value.invocation_id is None  # nothing was appended for it
        assert sum([await log.tail(p) for p in range(2)]) == 1
    finally:
        await log.close()
