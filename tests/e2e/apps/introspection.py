"""Services of the SQL introspection and metrics tests (served by ``python -m sdk``): the core
greeter, counter and steps (retries), and a workflow waiting on a durable promise (rows of
``sys_promise``)."""

from __future__ import annotations

import sdk as restate
from sdk import WorkflowContext, WorkflowSharedContext
from tests.e2e.apps.core import counter, greeter, steps

approval = restate.Workflow("Approval")


@approval.main()
async def run(ctx: WorkflowContext, subject: str) -> str:
    answer = await ctx.promise("answer", type_hint=str).value()
    return f"{subject}: {answer}"


@approval.handler()
async def answer(ctx: WorkflowSharedContext, value: str) -> None:
    await ctx.promise("answer", type_hint=str).resolve(value)


app = restate.app(services=[greeter, counter, steps, approval])
