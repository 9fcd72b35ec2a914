"""A one-way request does not hang when its receipt is lost (the e2e suites show the receipt's
normal path: ``Accepted`` / ``PreviouslyAccepted`` in tests/e2e/test_compat_ingress.py)."""

from __future__ import annotations

from pathlib import Path

from partition_processor.actions import SendReceipt
from partition_processor.commands import Target
from partition_processor.ids import parse_partition_key, partition_of
from runtime.ingress.gateway import InvocationGateway, PendingResponses
from runtime.log import LocalLog
from runtime.metadata import HandlerInfo

TARGET = Target("Greeter", "greet")
HANDLER = HandlerInfo("greet", "none")


async def test_a_send_without_a_receipt_is_accepted_once_its_record_is_durable(
    tmp_path: Path,
) -> None:
    """No partition processor runs here: the receipt never comes (as across a failover)."""
    log = LocalLog(tmp_path / "log", 2)
    await log.start()
    try:
        gateway = InvocationGateway(
            log,
            "node-a",
            PendingResponses(),
            max_record_bytes=1 << 20,
            max_attached=8,
            receipt_timeout_s=0.2,
        )
        invocation_id, receipt = await gateway.send(TARGET, HANDLER, b'"x"', [], "key-1")
        assert receipt == SendReceipt(True, 0)
        partition = partition_of(parse_partition_key(invocation_id), 2)
        assert await log.tail(partition) == 1  # the Invoke is in the log all the same
    finally:
        await log.close()
