"""Service communication, request-response (seed page: "Request-response calls").

``Greeter/greet`` calls the ``Visits`` object of the person and waits for its answer: the call
and its result are journaled, so a retry of ``greet`` does not count the visit twice.

    cairn dev examples.calls:app
    curl -X POST http://127.0.0.1:8080/Greeter/greet -d '"Ada"'
"""

from __future__ import annotations

import sdk as restate

greeter = restate.Service("Greeter")
visits = restate.VirtualObject("Visits")


@visits.handler()
async def count(ctx: restate.ObjectContext) -> int:
    seen = (await ctx.get("seen", type_hint=int) or 0) + 1
    ctx.set("seen", seen)
    return seen


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    seen = await ctx.object_call(count, key=name, arg=None)
    return f"Hello, {name}! (visit {seen})"


app = restate.app(services=[greeter, visits])
