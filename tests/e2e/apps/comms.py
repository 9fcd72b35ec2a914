"""Services of the communication end-to-end tests: calls, sends, delayed sends, timers,
combinators, awakeables and suspension (served by ``python -m sdk``).

The first group are the seed's snippets (``../shared/reference/restate-actions.md``, "Service
communication", "Delayed messages", "Durable timers and timeouts") made runnable.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import sdk as restate
from sdk import Context, ObjectContext, ObjectSharedContext, WorkflowContext
from tests.e2e.apps.effects import append_line, wait_for_gate

FAST_RETRIES = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=50),
    exponentiation_factor=2.0,
    max_interval=timedelta(milliseconds=500),
)
# Long enough that both racers of a select have completed when the attempt is replayed.
SLOW_RETRIES = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=1500),
    exponentiation_factor=1.0,
    max_interval=timedelta(milliseconds=1500),
)


def _now() -> float:
    return time.time()


# ---------------------------------------------------------------- a recorder of deliveries

recorder = restate.VirtualObject("Recorder")


@recorder.handler()
async def record(ctx: ObjectContext, entry: Any) -> None:
    """Appends ``entry`` with the time it was delivered (exclusive: one writer per key)."""
    at = await ctx.run_typed("at", _now)
    entries = await ctx.get("entries", type_hint=list) or []
    entries.append({"entry": entry, "at": at})
    ctx.set("entries", entries)


@recorder.handler(kind="shared")
async def entries(ctx: ObjectSharedContext) -> list[Any]:
    return await ctx.get("entries", type_hint=list) or []


# ---------------------------------------------------------------- seed: service calls

validation_service = restate.Service("ValidationService")


@validation_service.handler()
async def validate_order(ctx: Context, order: dict[str, Any]) -> bool:
    return bool(order.get("items"))


user_account = restate.VirtualObject("UserAccount")


@user_account.handler()
async def set_profile(ctx: ObjectContext, profile: dict[str, Any]) -> None:
    ctx.set("profile", profile)


@user_account.handler(kind="shared")
async def get_profile(ctx: ObjectSharedContext) -> dict[str, Any] | None:
    return await ctx.get("profile", type_hint=dict)


order_workflow = restate.Workflow("OrderWorkflow")


@order_workflow.main()
async def run(ctx: WorkflowContext, order: dict[str, Any]) -> dict[str, Any]:
    await ctx.sleep(timedelta(milliseconds=int(order.get("processing_ms", 0))))
    return {"orderId": ctx.key(), "status": "processed", "items": order.get("items", [])}


orders = restate.Service("Orders", invocation_retry_policy=SLOW_RETRIES)


@orders.handler()
async def process(ctx: Context, order: dict[str, Any]) -> dict[str, Any]:
    user_id, order_id = order["userId"], order["orderId"]
    # Call another service
    validation = await ctx.service_call(validate_order, order)
    # Call Virtual Object function
    profile = await ctx.object_call(get_profile, key=user_id, arg=None)
    # Submit Workflow
    result = await ctx.workflow_call(run, key=order_id, arg=order)
    return {"validation": validation, "profile": profile, "result": result}


def _fail_first_time(path: str) -> None:
    """Raises (a retryable error, outside any step) the first time, to force a replay."""
    marker = Path(path)
    if not marker.exists():
        marker.touch()
        raise RuntimeError("first attempt fails after the race was decided")


@orders.handler()
async def process_with_timeout(ctx: Context, order: dict[str, Any]) -> dict[str, Any]:
    """The seed's timeout pattern; the attempt that decides the race fails once afterwards, so
    the returned branch is the one chosen again on replay (when both racers are complete)."""
    order_id = order["orderId"]
    call = ctx.workflow_call(run, key=order_id, arg=order)
    decided: dict[str, Any]
    match await restate.select(
        result=call,
        timeout=ctx.sleep(timedelta(milliseconds=int(order["timeout_ms"]))),
    ):
        case ["result", result]:
            decided = {"branch": "result", "result": result}
        case _:
            decided = {"branch": "timeout"}
    decided["callee"] = await call.invocation_id()
    if order.get("marker"):
        _fail_first_time(order["marker"])
    return decided


# ---------------------------------------------------------------- seed: sending messages

notification_service = restate.Service("NotificationService")


@notification_service.handler()
async def send_email(ctx: Context, request: dict[str, Any]) -> None:
    ctx.object_send(record, key=request["userId"], arg={"email": request["message"]})


@notification_service.handler()
async def send_reminder(ctx: Context, request: dict[str, Any]) -> None:
    ctx.object_send(record, key=request["userId"], arg={"reminder": request["message"]})


analytics_service = restate.Service("AnalyticsService")


@analytics_service.handler()
async def record_event(ctx: Context, event: dict[str, Any]) -> None:
    ctx.object_send(record, key=event["userId"], arg={"event": event["kind"]})


shopping_cart = restate.VirtualObject("ShoppingCartObject")


@shopping_cart.handler()
async def empty_expired_cart(ctx: ObjectContext) -> None:
    ctx.clear("cart")
    ctx.object_send(record, key=ctx.key(), arg={"cart": "emptied"})


signup = restate.Service("Signup")


@signup.handler()
async def sign_up(ctx: Context, user_id: str) -> str:
    # Fire-and-forget notification
    ctx.service_send(send_email, {"userId": user_id, "message": "Welcome!"})
    # Background analytics
    ctx.service_send(record_event, {"kind": "user_signup", "userId": user_id})
    # Cleanup task
    ctx.object_send(empty_expired_cart, key=user_id, arg=None)
    return "signed up"


@signup.handler()
async def remind(ctx: Context, request: dict[str, Any]) -> float:
    """The seed's delayed message (with a delay the test can wait for); returns the send time."""
    sent_at = await ctx.time()
    ctx.service_send(
        send_reminder,
        {"userId": request["userId"], "message": request["message"]},
        send_delay=timedelta(milliseconds=int(request["delay_ms"])),
    )
    return sent_at


# ---------------------------------------------------------------- timers and combinators

timers = restate.Service("Timers")


@timers.handler()
async def sleep_for(ctx: Context, millis: int) -> list[float]:
    started = await ctx.time()
    await ctx.sleep(timedelta(milliseconds=millis))
    woke = await ctx.time()
    return [started, woke]


@timers.handler()
async def completion_order(ctx: Context, millis: list[int]) -> list[int]:
    """Sleeps of the given lengths, yielded by ``as_completed`` in the order they fire."""
    by_future = {ctx.sleep(timedelta(milliseconds=m)): m for m in millis}
    order = []
    async for future in restate.as_completed(*by_future):
        order.append(by_future[future])
    return order


@timers.handler()
async def first_of(ctx: Context, millis: int) -> dict[str, int]:
    """``wait_completed``: a short sleep against an awakeable nobody resolves."""
    sleep = ctx.sleep(timedelta(milliseconds=millis))
    _, never = ctx.awakeable()
    done, pending = await restate.wait_completed(sleep, never)
    return {"done": len(done), "pending": len(pending), "sleep_done": int(sleep in done)}


# ---------------------------------------------------------------- fan-out and the chain

squares = restate.Service("Squares")


@squares.handler()
async def square(ctx: Context, n: int) -> int:
    return n * n


@squares.handler()
async def fan_out(ctx: Context, n: int) -> dict[str, Any]:
    calls = [ctx.service_call(square, i) for i in range(n)]
    results = [await call for call in await restate.gather(*calls)]
    return {"sum": sum(results), "callees": [await call.invocation_id() for call in calls]}


@squares.handler()
async def generic(ctx: Context, request: dict[str, Any]) -> int:
    """By name, with raw JSON bytes: a call, and a send to the recorder."""
    raw = await ctx.generic_call("Squares", "square", str(request["n"]).encode())
    ctx.generic_send("Recorder", "record", raw, key=request["recorder_key"])
    return int(raw)


chain = restate.Service("Chain")


@chain.handler()
async def chain_a(ctx: Context, path: str) -> list[str]:
    await ctx.run_typed("effect", append_line, path=path, line="A")
    return ["A", *await ctx.service_call(chain_b, path)]


@chain.handler()
async def chain_b(ctx: Context, path: str) -> list[str]:
    await ctx.run_typed("effect", append_line, path=path, line="B")
    return ["B", *await ctx.service_call(chain_c, path)]


@chain.handler()
async def chain_c(ctx: Context, path: str) -> list[str]:
    await ctx.run_typed("effect", append_line, path=path, line="C")
    await ctx.run_typed("gate", wait_for_gate, path=path)
    await ctx.run_typed("done", append_line, path=path, line="C done")
    return ["C"]


@chain.handler()
async def burst(ctx: Context, request: dict[str, Any]) -> int:
    """``count`` one-way messages spread over ``keys`` recorder keys."""
    for i in range(int(request["count"])):
        key = f"{request['prefix']}-{i % int(request['keys'])}"
        ctx.object_send(record, key=key, arg=i)
    return int(request["count"])


# ---------------------------------------------------------------- journaled call results

effects = restate.Service("Effects", invocation_retry_policy=FAST_RETRIES)


@effects.handler()
async def effect(ctx: Context, request: dict[str, Any]) -> str:
    await ctx.run_typed("effect", append_line, path=request["path"], line=request["line"])
    if request.get("fail"):
        raise restate.TerminalError(f"{request['line']} refused", status_code=422)
    return request["line"].upper()


@effects.handler()
async def call_once(ctx: Context, path: str) -> str:
    result: str = await ctx.service_call(effect, {"path": path, "line": "callee"})
    return result


@effects.handler()
async def call_then_fail_once(ctx: Context, path: str) -> list[str]:
    """Two calls (one ending in a TerminalError), then a failure that forces a replay: the
    callees' results come from the journal, the callees are not called again."""
    ok = await ctx.service_call(effect, {"path": path, "line": "ok"})
    try:
        await ctx.service_call(effect, {"path": path, "line": "bad", "fail": True})
        refused = "not refused"
    except restate.TerminalError as exc:
        refused = f"{exc.status_code}: {exc.message}"
    _fail_first_time(path + ".marker")
    return [ok, refused]


# ---------------------------------------------------------------- awakeables and suspension

awakeables = restate.Service("Awakeables")


@awakeables.handler(inactivity_timeout=timedelta(milliseconds=100))
async def wait_for_one(ctx: Context, recorder_key: str) -> str:
    """Publishes an awakeable id (to the recorder) and waits for it; suspends meanwhile."""
    awakeable_id, value = ctx.awakeable(type_hint=str)
    ctx.object_send(record, key=recorder_key, arg=awakeable_id)
    return f"got {await value}"


@awakeables.handler()
async def wait_for_two(ctx: Context, recorder_key: str) -> list[str]:
    """Two awakeables, awaited in order (the first one resolved stays so while it waits)."""
    first_id, first = ctx.awakeable(type_hint=str)
    second_id, second = ctx.awakeable(type_hint=str)
    ctx.object_send(record, key=recorder_key, arg=[first_id, second_id])
    return [await first, await second]


@awakeables.handler()
async def resolve(ctx: Context, request: dict[str, Any]) -> None:
    ctx.resolve_awakeable(request["id"], request["value"])


@awakeables.handler()
async def reject(ctx: Context, request: dict[str, Any]) -> None:
    ctx.reject_awakeable(request["id"], request["reason"])


@awakeables.handler()
async def resolve_bad_id(ctx: Context, awakeable_id: str) -> str:
    try:
        ctx.resolve_awakeable(awakeable_id, "x")
    except restate.TerminalError as exc:
        return f"{exc.status_code}: {exc.message}"
    return "accepted"


# ---------------------------------------------------------------- cancelling what was sent

sleepy = restate.Service("Sleepy")


@sleepy.handler()
async def nap(ctx: Context, millis: int) -> str:
    await ctx.sleep(timedelta(milliseconds=millis))
    return "rested"


@sleepy.handler()
async def send_and_cancel(ctx: Context, millis: int) -> str:
    handle = ctx.service_send(nap, millis)
    await handle.cancel_invocation()
    return await handle.invocation_id()


@sleepy.handler()
async def call_and_cancel(ctx: Context, millis: int) -> str:
    call = ctx.service_call(nap, millis)
    callee = await call.invocation_id()
    await call.cancel_invocation()
    try:
        await call
    except restate.TerminalError as exc:
        return f"{callee} {exc.status_code}"
    return f"{callee} not cancelled"


app = restate.app(
    services=[
        recorder,
        validation_service,
        user_account,
        order_workflow,
        orders,
        notification_service,
        analytics_service,
        shopping_cart,
        signup,
        timers,
        squares,
        chain,
        effects,
        awakeables,
        sleepy,
    ]
)
