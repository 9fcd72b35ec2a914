"""Three versions of one workflow for the versioning end-to-end tests (``python -m sdk
tests.e2e.apps.versions:v1`` etc.). Each step appends ``VERSION:step`` to the file named by the
input, so a test sees which code ran it. The run waits mid-way on its "go" promise: the
invocation suspends there, deterministically, for as long as the test needs.

- ``v1``: one, (go), two.
- ``v2``: the step order differs: two, one, (go) — a v1 journal mismatches at entry 1.
- ``v2_compatible``: v1 up to the promise; only what comes after it changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import sdk as restate
from sdk import WorkflowContext, WorkflowSharedContext
from tests.e2e.apps.effects import append_line

Step = Callable[[WorkflowContext, str], Awaitable[None]]


def _step(name: str, version: str) -> Step:
    async def step(ctx: WorkflowContext, path: str) -> None:
        await ctx.run(name, lambda: append_line(path, f"{version}:{name}"))

    return step


def _app(version: str, before: list[str], after: list[str]) -> restate.App:
    upgrade = restate.Workflow("Upgrade")

    @upgrade.main()
    async def run(ctx: WorkflowContext, path: str) -> str:
        for name in before:
            await _step(name, version)(ctx, path)
        await ctx.promise("go", type_hint=bool).value()
        for name in after:
            await _step(name, version)(ctx, path)
        return version

    @upgrade.handler()
    async def go(ctx: WorkflowSharedContext) -> None:
        await ctx.promise("go", type_hint=bool).resolve(True)

    return restate.app(services=[upgrade])


v1 = _app("v1", ["one"], ["two"])
v2 = _app("v2", ["two", "one"], [])
v2_compatible = _app("v2c", ["one"], ["two", "three"])
