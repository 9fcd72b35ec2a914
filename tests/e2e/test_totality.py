"""Apply is total (DESIGN §11): records that pass no edge and cannot be applied, put straight
into the real log, fail only their invocation (572) or are dropped, with a metric; the node
stays healthy and every partition goes on serving.

The edges refuse such records, so the test writes them itself: on Kafka it produces them to the
node's log topic as the node does (raw msgpack value, explicit partition, no key or headers); on
the local log it stops the node, appends with ``LocalLog`` on its data dir and restarts it.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from partition_processor import codes
from partition_processor.commands import (
    AdminSource,
    Envelope,
    Invoke,
    NotifySignal,
    Target,
    encode_envelope,
)
from partition_processor.ids import (
    make_invocation_id,
    parse_partition_key,
    partition_of,
)
from partition_processor.journal import Success
from partition_processor.keys import MAX_TEXT_BYTES
from runtime.log import LocalLog
from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.e2e.harness import Client
from tests.e2e.serving import every_partition_serves
from tests.support.broker import unique_topic

APP = "tests.e2e.apps.poison:app"
PARTITIONS = 8


@pytest.fixture
def totality(log_kind: str, bootstrap: str | None, tmp_path: Path) -> Iterator[tuple[Cluster, str]]:
    """A node (with the topic prefix it logs to, on Kafka) and the poison app's endpoint."""
    prefix = unique_topic("totality")
    options: dict[str, object] = {"partitions": PARTITIONS}
    if log_kind == "kafka":
        options["topic_prefix"] = prefix
    started = start_cluster(APP, log_kind, tmp_path, bootstrap, **options)
    yield started, prefix
    stop_cluster(started)


async def _append_raw(
    cluster: Cluster,
    log_kind: str,
    bootstrap: str | None,
    prefix: str,
    partition: int,
    records: list[bytes],
    data_dir: Path,
) -> None:
    """Put ``records`` into the node's log of ``partition``, bypassing every edge."""
    if log_kind == "kafka":
        assert bootstrap is not None
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for record in records:
                await producer.send_and_wait(f"{prefix}.log", record, partition=partition)
        finally:
            await producer.stop()
        return
    cluster.node.stop()  # the LocalLog directory is locked while the node runs
    log = LocalLog(data_dir / "log" / "partitions", PARTITIONS)
    await log.start()
    try:
        await log.append(partition, records)
    finally:
        await log.close()
    await asyncio.to_thread(cluster.node.start)


async def _rejected(client: Client) -> dict[str, float]:
    text = (await client.admin("GET", "/metrics")).body.decode()
    found = re.findall(r'^cairn_records_rejected_total\{reason="(\w+)"\} (\S+)$', text, re.M)
    return {reason: float(value) for reason, value in found}


async def test_unapplicable_records_fail_their_invocation_or_are_dropped_and_nothing_stops(
    totality: tuple[Cluster, str], log_kind: str, bootstrap: str | None, tmp_path: Path
) -> None:
    cluster, prefix = totality
    client = Client(cluster.node)
    try:
        waiting = await client.send("/Poison/wait_forever")
        await client.wait_for(
            lambda: _phase_in(client, waiting, ("invoked", "suspended")), timeout_s=60
        )
        partition = partition_of(parse_partition_key(waiting), PARTITIONS)
        now_ms = int(time.time() * 1000)
        # An entry index past the journal key's u32: the store key cannot even be built.
        bad_signal = NotifySignal(waiting, 2**32, Success(b'"x"'))
        # An object key longer than a store key's length prefix (KeyTooLong), on the same
        # partition, with no sink: it belongs to no invocation that exists, so it is dropped.
        orphan = make_invocation_id(parse_partition_key(waiting), uuid.uuid4().bytes)
        huge_key = Invoke(
            orphan,
            Target("Counter", "add", "virtual_object", "exclusive", "k" * (MAX_TEXT_BYTES + 1)),
            b"1",
        )
        records = [
            encode_envelope(Envelope(AdminSource(), now_ms, command))
            for command in (bad_signal, huge_key)
        ]
        before = await _rejected(client) if log_kind == "kafka" else {}
        await _append_raw(
            cluster, log_kind, bootstrap, prefix, partition, records, tmp_path / "data"
        )

        async def failed() -> dict[str, object] | None:
            status = await client.invocation(waiting)
            return status if status["status"] == "completed" else None

        status = await client.wait_for(failed, timeout_s=60)
        failure = status["result"]["failure"]
        assert failure["code"] == codes.UNAPPLICABLE_RECORD == 572, status
        assert "could not be applied (NotifySignal)" in failure["message"], failure
        attached = await client.attach(waiting)
        assert attached.status == 572 or attached.json()["code"] == 572, attached.body

        orphan_status = await client.admin("GET", f"/invocations/{orphan}")
        assert orphan_status.status == 404, orphan_status.body

        after = await _rejected(client)
        assert after.get("failed_invocation", 0) - before.get("failed_invocation", 0) == 1, after
        assert after.get("dropped", 0) - before.get("dropped", 0) == 1, after

        for url in (f"{cluster.node.ingress}/restate/health", f"{cluster.node.admin}/health"):
            health = await client.request("GET", url)
            assert health.status == 200, (url, health.body)
        await every_partition_serves(client, PARTITIONS)
        assert cluster.node.process.alive()
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        await client.close()


async def _phase_in(client: Client, invocation_id: str, phases: tuple[str, ...]) -> bool:
    status = await client.invocation(invocation_id)
    return status["status"] in phases
