"""Stopping aiokafka clients (KafkaLog's producer, consumers and admin client)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

_log = logging.getLogger(__name__)


async def _quietly(stopping: Any) -> None:
    """Await a client's stop/close, logging (not raising) its failure so others still stop."""
    try:
        await stopping
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we are being cancelled: never swallowed
        # aiokafka's fetcher awaits the fetch tasks it has just cancelled, so their
        # CancelledError escapes the consumer's stop() (e.g. once the broker is gone); it is not
        # a cancellation of ours, and the other clients must still be stopped.
        _log.warning("a Kafka client's stop raised its own CancelledError", exc_info=True)
    except Exception:
        _log.warning("error while stopping a Kafka client", exc_info=True)
