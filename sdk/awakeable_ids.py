"""Awakeable ids: how ``ctx.awakeable()`` names an awakeable, and the check of a given id.

An id is ``sign_1`` and the URL-safe base64 (unpadded) of the invocation id and the awakeable's
journal index (4 bytes, big-endian).
"""

from __future__ import annotations

import base64

from sdk.errors import TerminalError

_AWAKEABLE_PREFIX = "sign_1"


def awakeable_id_of(invocation_id: str, index: int) -> str:
    raw = invocation_id.encode() + index.to_bytes(4, "big")
    return _AWAKEABLE_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def check_awakeable_id(awakeable_id: str) -> None:
    """Reject ids that cannot have come from ``ctx.awakeable()`` (TerminalError 400)."""
    if not isinstance(awakeable_id, str) or not awakeable_id.startswith(_AWAKEABLE_PREFIX):
        raise TerminalError(f"invalid awakeable id {awakeable_id!r}", 400)
    body = awakeable_id[len(_AWAKEABLE_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        raw[:-4].decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise TerminalError(f"invalid awakeable id {awakeable_id!r}", 400) from exc
    if len(raw) <= 4:
        raise TerminalError(f"invalid awakeable id {awakeable_id!r}", 400)
