"""The event loop a process runs on: an endpoint (``python -m sdk``) and a node (``cairn server``).

uvloop (libuv) runs aiohttp, grpc.aio and the node's many small tasks with less CPU per request
than asyncio's pure-Python loop (issue 10). ``auto`` takes it when it is importable and falls
back to asyncio's loop otherwise, so a platform without a uvloop wheel still runs. The runtime
takes its choice from here too: one home for what ``auto`` means.

``run`` also tunes the garbage collector for a long-running server: the objects alive when the
process starts serving (modules, grpc, aiohttp, protobuf descriptors) are frozen out of the
collector's scans, and the youngest generation is collected every ``GC_GEN0_THRESHOLD``
allocations instead of every 700. Profiles of a node under load showed the collector at about a
tenth of its main thread, mostly rescanning objects that live as long as the process.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

EVENT_LOOPS = ("auto", "uvloop", "asyncio")

_T = TypeVar("_T")

# Allocations between collections of the youngest generation (CPython's default: 700). Each
# request allocates a few thousand short-lived objects, nearly all freed by reference counting;
# collecting less often lets them die before a scan promotes them to older generations.
GC_GEN0_THRESHOLD = 20_000


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the chosen loop; None: asyncio's default. ValueError names a bad choice
    (and ``uvloop`` asked for explicitly where it is not installed)."""
    if choice not in EVENT_LOOPS:
        raise ValueError(f"event loop must be one of {', '.join(EVENT_LOOPS)}, got {choice!r}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        if choice == "uvloop":
            raise ValueError("event loop uvloop: the uvloop package is not installed") from exc
        return None
    return uvloop.new_event_loop


def loop_name(choice: str) -> str:
    """What ``choice`` runs on here: ``uvloop`` or ``asyncio``."""
    return "asyncio" if loop_factory(choice) is None else "uvloop"


def run(main: Coroutine[Any, Any, _T], choice: str = "auto") -> _T:
    """``asyncio.run(main)`` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except ValueError:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GC_GEN0_THRESHOLD, gen0), gen1, gen2)
    gc.freeze()  # what startup built lives as long as the process: never scan it again
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
