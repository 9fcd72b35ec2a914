"""Awakeables: wait for an external system in any handler (seed page, the note closing
"Workflow events").

``Approvals/request`` creates an awakeable, publishes its id in state (a real app hands it to the
external system), and suspends until someone resolves or rejects it through the ingress.

    cairn dev examples.awakeables:app
    curl -X POST http://127.0.0.1:8080/Approvals/doc-7/request/send
    cairn state get Approvals doc-7        # the awakeable's id
    curl -X POST http://127.0.0.1:8080/restate/awakeables/<id>/resolve -d '"ok by Ada"'
"""

from __future__ import annotations

import sdk as restate

approvals = restate.VirtualObject("Approvals")


@approvals.handler()
async def request(ctx: restate.ObjectContext) -> str:
    awakeable_id, decision = ctx.awakeable(type_hint=str)
    ctx.set("awakeable", awakeable_id)
    try:
        verdict = await decision
    except restate.TerminalError as exc:
        verdict = f"rejected: {exc.message}"
    ctx.clear("awakeable")
    return verdict


app = restate.app(services=[approvals])
