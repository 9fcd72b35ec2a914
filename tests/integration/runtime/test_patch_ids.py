"""The gateway gives each state patch an id of its own, so the partition can tell a second
record of one patch from another patch (the dedup itself: tests/unit/partition_processor/
test_patch_state.py and the crash simulation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from partition_processor.commands import PatchState, decode_envelope
from partition_processor.ids import object_partition_key, partition_of
from runtime.ingress.gateway import PatchNotConfirmed
from runtime.log import LocalLog
from tests.support.gateways import bare_gateway


async def test_each_patch_request_appends_a_record_with_an_id_of_its_own(tmp_path: Path) -> None:
    """No partition processor runs here: each patch is appended, then not confirmed."""
    log = LocalLog(tmp_path / "log", 2)
    await log.start()
    try:
        gateway = bare_gateway(log, receipt_timeout_s=0.2, leader_timeout_s=0.2)
        for _ in range(2):
            with pytest.raises(PatchNotConfirmed):
                await gateway.patch_state(
                    lambda sink: PatchState("Counter", "k1", {"n": b"1"}, None, sink)
                )
        partition = partition_of(object_partition_key("Counter", "k1"), 2)
        assert await log.tail(partition) == 2
        records = []
        reader = log.read(partition, 0)
        async for batch in reader:
            records += batch
            if len(records) == 2:
                break
        await reader.aclose()  # type: ignore[attr-defined]
        commands = [decode_envelope(record.payload).command for record in records]
        ids = [c.patch_id for c in commands if isinstance(c, PatchState)]
        assert len(ids) == 2 and all(ids) and ids[0] != ids[1], ids
    finally:
        await log.close()
