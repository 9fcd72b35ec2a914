"""Sending messages and delayed messages (seed page: "Sending messages", "Delayed messages").

``Signup/register`` returns at once: the welcome mail is a one-way send, and the reminder a send
delayed by a day (a durable timer in the runtime: it survives restarts).

    cairn dev examples.messaging:app
    curl -X POST http://127.0.0.1:8080/Signup/register -d '"ada@example.com"'
"""

from __future__ import annotations

from datetime import timedelta

import sdk as restate

signup = restate.Service("Signup")
mailbox = restate.VirtualObject("Mailbox")


@mailbox.handler()
async def deliver(ctx: restate.ObjectContext, message: str) -> None:
    inbox = await ctx.get("inbox", type_hint=list[str]) or []
    ctx.set("inbox", [*inbox, message])


@signup.handler()
async def register(ctx: restate.Context, address: str) -> str:
    ctx.object_send(deliver, key=address, arg="welcome")
    ctx.object_send(deliver, key=address, arg="how is it going?", send_delay=timedelta(days=1))
    return "registered"


app = restate.app(services=[signup, mailbox])
