"""Services of the ingress compatibility suite, written exactly as for restate-sdk.

Nothing here names Cairn: ``import restate`` resolves to tests/compat/restate (Cairn's sdk), so
the very same file runs on a Restate server with restate-sdk installed.
"""

from datetime import timedelta

import restate
from restate import (
    Context,
    ObjectContext,
    ObjectSharedContext,
    TerminalError,
    WorkflowContext,
    WorkflowSharedContext,
)
from restate.serde import BytesSerde
from restate.workflow import Workflow

# Restate's quickstart object: `curl .../greeter/mary/ungreet -d '{}'` must be refused.
greeter = restate.VirtualObject("greeter")


@greeter.handler()
async def greet(ctx: ObjectContext, name: str) -> str:
    count = (await ctx.get("count", type_hint=int) or 0) + 1
    ctx.set("count", count)
    return f"Hello {name} for the {count}-th time!"


@greeter.handler()
async def ungreet(ctx: ObjectContext) -> str:
    count = await ctx.get("count", type_hint=int) or 0
    if count > 0:
        count -= 1
    ctx.set("count", count)
    return f"Dear {ctx.key()}, taking one greeting back: {count}."


@greeter.handler(kind="shared")
async def count(ctx: ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


@greeter.handler()
async def hold(ctx: ObjectContext) -> str:
    """Holds the key's lock for an hour (until cancelled or killed)."""
    await ctx.sleep(timedelta(hours=1))
    return "woke up"


# Raw handlers: the body is bytes as sent, the output bytes as returned.
raw = restate.Service("raw")


@raw.handler(
    accept="*/*",
    content_type="application/octet-stream",
    input_serde=BytesSerde(),
    output_serde=BytesSerde(),
)
async def reverse(ctx: Context, data: bytes) -> bytes:
    return data[::-1]


@raw.handler(
    accept="text/*",
    content_type="text/plain",
    input_serde=BytesSerde(),
    output_serde=BytesSerde(),
)
async def shout(ctx: Context, text: bytes) -> bytes:
    return text.upper()


# A raw awakeable: whatever bytes resolve it over HTTP are what the handler gets.
mailbox = restate.VirtualObject("mailbox")


@mailbox.handler(content_type="application/octet-stream", output_serde=BytesSerde())
async def receive(ctx: ObjectContext) -> bytes:
    awakeable_id, letter = ctx.awakeable(serde=BytesSerde())
    ctx.set("awakeable", awakeable_id)
    return await letter


plain = restate.Service("plain")


@plain.handler()
async def ping(ctx: Context) -> str:
    return "pong"


@plain.handler()
async def nothing(ctx: Context) -> None:
    return None


@plain.handler()
async def echo(ctx: Context, value: dict[str, int] | None) -> dict[str, int] | None:
    return value


@plain.handler()
async def refuse(ctx: Context, reason: str) -> str:
    raise TerminalError(f"refused: {reason}", status_code=422)


signup = Workflow("signup")


@signup.main()
async def run(ctx: WorkflowContext, email: str) -> str:
    link = await ctx.promise("link", type_hint=str).value()
    return f"{email} verified with {link}"


@signup.handler()
async def click(ctx: WorkflowSharedContext, link: str) -> None:
    await ctx.promise("link", type_hint=str).resolve(link)


app = restate.app([greeter, raw, mailbox, plain, signup])
