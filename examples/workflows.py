"""Workflows with durable promises and signals (seed page: "Workflow events").

``Onboarding/run`` runs once per key: it waits for the ``email-confirmed`` promise, which the
``confirm`` signal handler resolves (from a link in the mail, say); ``status`` reads its state
while it runs.

    cairn dev examples.workflows:app
    curl -X POST http://127.0.0.1:8080/Onboarding/ada/run/send -d '"ada@example.com"'
    curl -X POST http://127.0.0.1:8080/Onboarding/ada/confirm -d '"secret"'
    curl http://127.0.0.1:8080/restate/workflow/Onboarding/ada/attach
"""

from __future__ import annotations

import sdk as restate

onboarding = restate.Workflow("Onboarding")


@onboarding.main()
async def run(ctx: restate.WorkflowContext, address: str) -> str:
    secret = await ctx.run_typed("make secret", lambda: "secret")
    ctx.set("status", "waiting for confirmation")
    answer = await ctx.promise("email-confirmed", type_hint=str).value()
    if answer != secret:
        ctx.set("status", "rejected")
        raise restate.TerminalError("wrong confirmation")
    ctx.set("status", "confirmed")
    return f"{address} confirmed"


@onboarding.handler()
async def confirm(ctx: restate.WorkflowSharedContext, secret: str) -> None:
    await ctx.promise("email-confirmed", type_hint=str).resolve(secret)


@onboarding.handler()
async def status(ctx: restate.WorkflowSharedContext) -> str | None:
    return await ctx.get("status", type_hint=str)


app = restate.app(services=[onboarding])
