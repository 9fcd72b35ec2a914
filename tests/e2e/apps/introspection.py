"""Services of the SQL introspection and metrics tests (served by ``python -m sdk``): the core
greeter, counter and steps (retries), and a workflow waiting on a durable promise (rows of
``sys_promise``), which suspends while it waits."""

from __future__ import annotations

from datetime import timedelta

import sdk as restate
from sdk import WorkflowContext, WorkflowSharedContext
from tests.e2e.apps.core import counter, greeter, steps

# Suspends at once when it waits (no inactivity timeout): the metrics test sees a suspension.
approval = restate.Workflow("Approval", inactivity_timeout=timedelta(0))


@approval.main()
async def run(ctx: WorkflowContext, subject: str) -> str:
    answer = await ctx.promise("answer", type_hint=str).value()
    return f"{subject}: {answer}"


@approval.handler()
async def answer(ctx: WorkflowSharedContext, value: str) -> None:
    await ctx.promise("answer", type_hint=str).resolve(value)


app = restate.app(services=[greeter, counter, steps, approval])
