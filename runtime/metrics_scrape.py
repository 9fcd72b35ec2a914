"""Gauges read when ``/metrics`` is scraped rather than kept up to date on the hot path:
invocations by state, outbox backlog and timers of the partitions this node leads, and each
applied partition's lag to its log's tail (README "Metrics")."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import Callable

from partition_processor import keys
from partition_processor.tables import KeyValueReader, decode_status
from runtime.log import Log, LogError
from runtime.metrics import INVOCATIONS, OUTBOX_BACKLOG, PARTITION_LAG, TIMERS_PENDING

log = logging.getLogger(__name__)

PHASES = ("scheduled", "inboxed", "invoked", "suspended", "backing_off", "completed")
# A scrape must answer even when the broker does not: the lag is then left as last read.
_TAIL_TIMEOUT_S = 2.0


def _count(store: KeyValueReader, kind: keys.Kind, partition: int) -> int:
    return sum(1 for _ in store.scan(keys.partition_prefix(kind, partition)))


def _sample_store(store: KeyValueReader, partitions: int, leading: set[int]) -> None:
    """Count the rows (blocking: runs in a worker thread)."""
    phases: Tally[str] = Tally()
    for partition in range(partitions):
        led = partition in leading
        timers = _count(store, keys.Kind.TIMER, partition) if led else 0
        outbox = _count(store, keys.Kind.OUTBOX, partition) if led else 0
        TIMERS_PENDING.labels(str(partition)).set(timers)
        OUTBOX_BACKLOG.labels(str(partition)).set(outbox)
        if led:
            prefix = keys.partition_prefix(keys.Kind.STATUS, partition)
            phases.update(decode_status(raw).phase for _, raw in store.scan(prefix))
    for phase in PHASES:
        INVOCATIONS.labels(phase).set(phases[phase])


async def refresh_gauges(
    store: KeyValueReader,
    log_: Log,
    *,
    leading: set[int],
    applied: Callable[[], dict[int, int]],
) -> None:
    """Update the scrape-time gauges. ``applied()``: partition -> last applied LSN, for the
    partitions this node applies."""

    async def lag(partition: int, applied_lsn: int) -> None:
        try:
            tail = await asyncio.wait_for(log_.tail(partition), _TAIL_TIMEOUT_S)
        except (LogError, TimeoutError) as exc:
            log.debug("partition %d: no tail for the lag metric: %r", partition, exc)
            return
        PARTITION_LAG.labels(str(partition)).set(max(tail - 1 - applied_lsn, 0))

    positions = applied()
    await asyncio.gather(*(lag(p, lsn) for p, lsn in positions.items()))
    await asyncio.to_thread(_sample_store, store, log_.partitions, leading)
