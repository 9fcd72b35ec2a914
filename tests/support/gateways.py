"""An ``InvocationGateway`` on a bare log, for tests of what the ingress appends and waits for
(no partition processor runs: receipts and results come only when a test gives them)."""

from __future__ import annotations

from runtime.ingress.gateway import InvocationGateway, PendingResponses
from runtime.log import Log


def bare_gateway(
    log: Log,
    responses: PendingResponses | None = None,
    *,
    receipt_timeout_s: float = 600,
    leader_timeout_s: float = 600,
    reattach_interval_s: float = 600,
) -> InvocationGateway:
    """Node "node-a"'s gateway, 1 MiB records, 8 attached callers; every wait 600 s unless set."""
    return InvocationGateway(
        log,
        "node-a",
        PendingResponses() if responses is None else responses,
        max_record_bytes=1 << 20,
        max_attached=8,
        receipt_timeout_s=receipt_timeout_s,
        leader_timeout_s=leader_timeout_s,
        reattach_interval_s=reattach_interval_s,
    )
