"""Services of the workflow end-to-end tests (served by ``python -m sdk``): workflows and durable
promises, cancellation with compensation, kill of a blocked object, retention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sdk as restate
from sdk import WorkflowContext, WorkflowSharedContext
from tests.e2e.apps.effects import append_line

# ---------------------------------------------------------------- the seed's order workflow


@dataclass
class PaymentResult:
    transaction_id: str
    amount: int


@dataclass
class InventoryConfirmation:
    warehouse: str
    items: int


order = restate.Workflow("OrderWorkflow")


@order.main()
async def run(ctx: WorkflowContext, customer: str) -> dict[str, Any]:
    ctx.set("status", "waiting for payment and inventory")
    # Wait for multiple events using gather
    payment_promise = ctx.promise("payment", type_hint=PaymentResult)
    inventory_promise = ctx.promise("inventory", type_hint=InventoryConfirmation)
    # gather returns the futures once all completed (restate-sdk 1.3); awaiting gives the values
    payment_future, inventory_future = await restate.gather(
        payment_promise.value(), inventory_promise.value()
    )
    payment, inventory = await payment_future, await inventory_future
    assert isinstance(payment, PaymentResult) and isinstance(inventory, InventoryConfirmation)
    ctx.set("status", "waiting for approval")
    # Wait for human approval
    approved = await ctx.promise("manager-approval", type_hint=bool).value()
    ctx.set("status", "approved" if approved else "rejected")
    return {
        "customer": customer,
        "transaction": payment.transaction_id,
        "amount": payment.amount,
        "warehouse": inventory.warehouse,
        "approved": approved,
    }


# In a signal function
@order.handler()
async def confirm_payment(ctx: WorkflowSharedContext, result: PaymentResult) -> None:
    await ctx.promise("payment", type_hint=PaymentResult).resolve(result)


@order.handler()
async def confirm_inventory(ctx: WorkflowSharedContext, result: InventoryConfirmation) -> None:
    await ctx.promise("inventory", type_hint=InventoryConfirmation).resolve(result)


# In a signal function
@order.handler()
async def approve_request(ctx: WorkflowSharedContext, approved: bool) -> None:
    await ctx.promise("manager-approval", type_hint=bool).resolve(approved)


@order.handler()
async def status(ctx: WorkflowSharedContext) -> str | None:
    return await ctx.get("status", type_hint=str)


# ---------------------------------------------------------------- promises, signalled from outside

signals = restate.Workflow("Signals")


@signals.main(name="run")
async def wait_for_answer(ctx: WorkflowContext, gated: bool) -> dict[str, Any]:
    """Peeks at "answer", optionally waits for "go" first, then waits for "answer"."""
    early = await ctx.promise("answer").peek()
    ctx.set("early_peek", early)
    if gated:
        ctx.set("stage", "waiting for go")
        await ctx.promise("go").value()
    ctx.set("stage", "waiting for answer")
    answer = await ctx.promise("answer").value()
    ctx.set("stage", "done")
    return {"early_peek": early, "answer": answer}


@signals.handler()
async def resolve(ctx: WorkflowSharedContext, request: dict[str, Any]) -> str:
    await ctx.promise(request["name"]).resolve(request["value"])
    return f"resolved {request['name']}"


@signals.handler()
async def reject(ctx: WorkflowSharedContext, request: dict[str, Any]) -> None:
    await ctx.promise(request["name"]).reject(request["message"], request["code"])


@signals.handler()
async def peek(ctx: WorkflowSharedContext, name: str) -> Any:
    return await ctx.promise(name).peek()


@signals.handler()
async def stage(ctx: WorkflowSharedContext) -> str | None:
    return await ctx.get("stage", type_hint=str)


# ---------------------------------------------------------------- workflows submitted by a service

shop = restate.Service("Shop")


@shop.handler()
async def submit_and_wait(ctx: restate.Context, key: str) -> dict[str, Any]:
    result: dict[str, Any] = await ctx.workflow_call(wait_for_answer, key=key, arg=False)
    return result


@shop.handler()
async def submit(ctx: restate.Context, key: str) -> str:
    handle = ctx.workflow_send(wait_for_answer, key=key, arg=True)
    return await handle.invocation_id()


# ---------------------------------------------------------------- cancellation and compensation


worker = restate.Service("Worker")


@worker.handler(inactivity_timeout=timedelta(milliseconds=200))
async def slow(ctx: restate.Context, path: str) -> str:
    """Sleeps an hour (suspended after 200 ms); compensates when cancelled."""
    try:
        await ctx.sleep(timedelta(hours=1))
    except restate.TerminalError:
        await ctx.run_typed("compensate", append_line, path=path, line="child compensated")
        raise
    return "slept"


def _cancellable(name: str, inactivity_timeout: timedelta | None) -> restate.Workflow:
    """A workflow that starts a slow child, then sleeps an hour; cancelled, it compensates."""
    workflow = restate.Workflow(name, inactivity_timeout=inactivity_timeout)

    @workflow.main()
    async def run(ctx: WorkflowContext, path: str) -> str:
        child = ctx.service_call(slow, path)
        ctx.set("child", await child.invocation_id())
        ctx.set("stage", "sleeping")
        try:
            await ctx.sleep(timedelta(hours=1))
            await child
        except restate.TerminalError as exc:
            await ctx.run_typed("compensate", append_line, path=path, line="workflow compensated")
            ctx.set("stage", f"compensated after {exc.status_code} {exc.message}")
            raise
        return "finished"

    @workflow.handler()
    async def stage(ctx: WorkflowSharedContext) -> str | None:
        return await ctx.get("stage", type_hint=str)

    return workflow


cancellable = _cancellable("Cancellable", None)  # stays invoked while it sleeps
cancellable_suspending = _cancellable("CancellableSuspending", timedelta(milliseconds=200))


# ---------------------------------------------------------------- a virtual object's lock

locker = restate.VirtualObject("Locker")


@locker.handler()
async def hold(ctx: restate.ObjectContext) -> str:
    """Holds the key's lock until its awakeable (published in state "pending") is resolved."""
    awakeable_id, released = ctx.awakeable(type_hint=str)
    ctx.set("pending", awakeable_id)
    value = await released
    ctx.clear("pending")
    return value


@locker.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    count = await ctx.get("count", type_hint=int) or 0
    ctx.set("count", count + delta)
    return count + delta


@locker.handler(idempotency_retention=timedelta(seconds=1))
async def add_briefly_idempotent(ctx: restate.ObjectContext, delta: int) -> int:
    """``add`` whose idempotent results are kept only one second."""
    result: int = await add(ctx, delta)
    return result


@locker.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello, {name}!"


# ---------------------------------------------------------------- retention

RETENTION = timedelta(seconds=3)

ephemeral = restate.Workflow("Ephemeral")


@ephemeral.main(name="run", workflow_retention=RETENTION)
async def remember(ctx: WorkflowContext, value: str) -> str:
    """Stores ``value`` in state and in promise "echo"; optionally waits for "release"."""
    ctx.set("value", value)
    await ctx.promise("echo", type_hint=str).resolve(value)
    if value.startswith("wait"):
        await ctx.promise("release", type_hint=str).value()
    return f"remembered {value}"


@ephemeral.handler()
async def release(ctx: WorkflowSharedContext) -> None:
    await ctx.promise("release", type_hint=str).resolve("now")


@ephemeral.handler()
async def recall(ctx: WorkflowSharedContext) -> dict[str, Any]:
    return {
        "value": await ctx.get("value", type_hint=str),
        "echo": await ctx.promise("echo", type_hint=str).peek(),
    }


app = restate.app(
    services=[
        order,
        signals,
        shop,
        worker,
        cancellable,
        cancellable_suspending,
        locker,
        greeter,
        ephemeral,
    ]
)
