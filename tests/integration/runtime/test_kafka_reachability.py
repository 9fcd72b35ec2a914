"""KafkaLog under a broker outage (README "Broker outages"): a stopped broker (SIGSTOP of the
test's own Tansu) is found unreachable by the probe within its grace, appends then fail at once
with ``LogError`` instead of hanging for the request timeout, and the first answer after SIGCONT
clears it; appends and reads go on without a restart and without losing a record. The same
with a broker that is killed (connections refused) and started again on its port, its data
kept on a local S3 server: the KafkaLog's clients reconnect by themselves."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.log import KafkaLog, LogError
from runtime.log.reachability import GRACE
from tests.support.broker import TansuBroker, s3_storage_env, unique_topic
from tests.support.s3 import S3Server


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    broker = TansuBroker.start(tmp_path)
    yield broker
    if broker.process.poll() is None:
        os.kill(broker.process.pid, signal.SIGCONT)  # never leave it stopped
    broker.stop()


async def test_a_stopped_broker_is_unreachable_appends_fail_fast_and_it_recovers(
    own_broker: TansuBroker,
) -> None:
    log = KafkaLog(own_broker.bootstrap, unique_topic("reach"), 1)
    await log.start()
    try:
        assert await log.append(0, [b"before"]) == 0
        await log.reachability.probe_once()
        assert log.reachability.reason is None

        os.kill(own_broker.process.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        while log.reachability.reason is None:
            assert time.monotonic() - stopped < 4 * GRACE.total_seconds(), "never unreachable"
            await log.reachability.probe_once()
        # Not before the grace: one slow answer does not make a broker unreachable.
        assert time.monotonic() - stopped >= GRACE.total_seconds()
        reason = log.reachability.reason
        assert reason.startswith("the log is unreachable: Kafka (") and "has not answered" in reason
        started = time.monotonic()
        with pytest.raises(LogError, match="unreachable"):
            await log.append(0, [b"refused"])
        assert time.monotonic() - started < 0.5  # at once, not after the request timeout

        os.kill(own_broker.process.pid, signal.SIGCONT)
        resumed = time.monotonic()
        while log.reachability.reason is not None:
            assert time.monotonic() - resumed < 30, "never reachable again"
            await log.reachability.probe_once()
            await asyncio.sleep(0.1)
        assert await log.append(0, [b"after"]) == 1  # the refused record was never appended
        batches = log.read(0, 0)
        payloads: list[bytes] = []
        while len(payloads) < 2:
            payloads += [r.payload for r in await asyncio.wait_for(anext(batches), 30)]
        await batches.aclose()
        assert payloads == [b"before", b"after"]
    finally:
        await log.close()


async def _until(condition: object, log: KafkaLog, timeout_s: float) -> float:
    """Probe until ``log``'s reachability is ``condition`` (reason set or not); seconds taken."""
    started = time.monotonic()
    while (log.reachability.reason is not None) != condition:
        assert time.monotonic() - started < timeout_s, f"reachability never {condition}"
        await log.reachability.probe_once()
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_a_killed_and_restarted_broker_is_reconnected(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.bucket()
    env = s3_storage_env(s3_server.endpoint)
    broker = TansuBroker.start(tmp_path, storage=f"s3://{bucket}/", env=env)
    log = KafkaLog(broker.bootstrap, unique_topic("restart"), 1)
    try:
        await log.start()
        assert await log.append(0, [b"before"]) == 0
        await log.reachability.probe_once()  # answered: the grace counts from here
        broker.stop()  # SIGKILL: connections are refused now
        assert await _until(True, log, 4 * GRACE.total_seconds()) >= GRACE.total_seconds() - 1
        with pytest.raises(LogError, match="unreachable"):
            await log.append(0, [b"refused"])

        broker = TansuBroker.start(tmp_path, broker.port, storage=f"s3://{bucket}/", env=env)
        await _until(False, log, 30)
        assert await asyncio.wait_for(log.append(0, [b"after"]), 60) == 1
        batches = log.read(0, 0)
        payloads: list[bytes] = []
        while len(payloads) < 2:
            payloads += [r.payload for r in await asyncio.wait_for(anext(batches), 30)]
        await batches.aclose()  # type: ignore[attr-defined]
        assert payloads == [b"before", b"after"]
    finally:
        await log.close()
        broker.stop()
