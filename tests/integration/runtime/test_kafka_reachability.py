"""KafkaLog under a broker outage (README "Broker outages"): a stopped broker (SIGSTOP of the
test's own Tansu) is found unreachable by the probe within its grace, appends then fail at once
with ``LogError`` instead of hanging for the request timeout, and the first answer after SIGCONT
clears it; appends and reads go on without a restart and without losing a record."""

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
from tests.support.broker import TansuBroker, unique_topic


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
