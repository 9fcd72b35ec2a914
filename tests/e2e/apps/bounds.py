"""Services of the bounds end-to-end tests (``tests/e2e/test_bounds.py``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import sdk as restate
from tests.e2e.apps.effects import wait_for_gate

FAST_RETRIES = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    exponentiation_factor=2.0,
    max_interval=timedelta(milliseconds=500),
)

# The node's inactivity/abort defaults are a minute each; these handlers override both, so a
# hung attempt is given up after about 2 s.
hang = restate.VirtualObject(
    "Hang",
    inactivity_timeout=timedelta(seconds=1),
    abort_timeout=timedelta(seconds=1),
    invocation_retry_policy=FAST_RETRIES,
)


@hang.handler()
async def once(ctx: restate.ObjectContext, marker: str) -> str:
    """Hangs forever, outside any context action, on the first attempt (the one that creates
    ``marker``); later attempts finish."""
    ctx.set("started", True)
    if not await asyncio.to_thread(Path(marker).exists):
        await asyncio.to_thread(Path(marker).write_text, "hung")
        await asyncio.Event().wait()  # never set: only an abort ends this attempt
    return "finished"


@hang.handler()
async def after(ctx: restate.ObjectContext) -> str:
    """Queued behind ``once`` on the same key."""
    return "after"


work = restate.Service("Work")


@work.handler()
async def double(ctx: restate.Context, n: int) -> int:
    await asyncio.sleep(0.02)  # holds its request (and a running slot) a little
    return 2 * n


def _true() -> bool:
    return True


@work.handler()
async def gated(ctx: restate.Context, path: str) -> str:
    """Runs until the test opens ``path``'s gate (polling: the stream stays quiet). Its journal
    entry 1 (a completed step) tells the test the attempt runs on the endpoint."""
    await ctx.run_typed("started", _true)
    await wait_for_gate(path)
    return "open"


@work.handler()
async def caller(ctx: restate.Context, n: int) -> int:
    """Calls another handler on the same node and waits for it."""
    doubled: int = await ctx.service_call(double, n)
    return doubled + 1


app = restate.app(services=[hang, work])
