"""Cancel, kill and purge one invocation through the log: the admin API's
``PATCH /invocations/{id}/cancel|kill|purge`` and the web console's buttons share this path."""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from partition_processor.commands import Purge, Terminate
from partition_processor.ids import InvalidInvocationId, parse_partition_key
from partition_processor.journal import Failure
from partition_processor.state_machine.on_terminate import CANCEL_SIGNALLED
from runtime.http_errors import error_response
from runtime.ingress.gateway import InvocationGateway, ResultUnavailable
from runtime.ingress.http import shutting_down_response
from runtime.ingress.validation import InvalidRequest

Action = Literal["cancel", "kill", "purge"]
ACTIONS: tuple[Action, ...] = ("cancel", "kill", "purge")


async def manage_invocation(
    gateway: InvocationGateway, invocation_id: str, action: Action, retry_after_s: int
) -> web.Response:
    """Append the action's command and wait for the partition's answer: 200 once done, 202 for a
    cancel that reached a running invocation, else an error response ``{"code", "message"}``."""
    try:
        parse_partition_key(invocation_id)
    except InvalidInvocationId as exc:
        return error_response(400, str(exc))
    try:
        outcome = await gateway.manage(
            lambda sink: (
                Purge(invocation_id, sink)
                if action == "purge"
                else Terminate(invocation_id, action, sink)
            )
        )
    except InvalidRequest as exc:
        return error_response(exc.status, exc.message, headers=exc.headers)
    except ResultUnavailable as exc:
        return shutting_down_response(exc, retry_after_s)
    if isinstance(outcome, Failure):
        return error_response(outcome.code, outcome.message)
    # As Restate 1.7: 200 and no body once done; 202 for a cancel that reached a running
    # invocation (the handler sees it at its next await).
    return web.Response(status=202 if outcome == CANCEL_SIGNALLED else 200)
