"""The size policy (DESIGN §11): one set of limits from the ingress through the log to the SDK.

``NodeConfig`` holds the defaults; ``SizePolicy`` is what the components receive. Every limit
derives from two settings, the request body and the key size, so that anything the ingress
accepts can be logged, sent to the handler and answered, and anything larger is refused where
it enters (413 at the ingress, a terminal failure for a handler's entry).
"""

from __future__ import annotations

import msgspec


class SizePolicy(msgspec.Struct, frozen=True):
    """Byte limits. ``entry_bytes``: one value in a journal entry (a state value, a ``ctx.run``
    result, a call argument, an output); ``key_bytes``: an object key, state key, idempotency
    key, promise/run/awakeable name or service/handler name; ``record_bytes``: one encoded log
    record (an entry plus ids, headers and framing); ``message_bytes``: one gRPC message between
    the runtime and an endpoint; ``eager_state_bytes``: the object's state sent with an
    attempt's start."""

    body_bytes: int
    entry_bytes: int
    key_bytes: int
    headers_bytes: int
    record_bytes: int
    message_bytes: int
    # The state sent with an attempt's start (names + values; 0: none, every read is lazy).
    eager_state_bytes: int
