"""Named crash points, for tests that must kill the node at an exact step.

``CAIRN_CRASH_AT=outbox.after_ship`` makes the node exit the first time it reaches that point,
as abruptly as ``kill -9`` (no shutdown code runs). Unset, a crash point costs one set lookup.

Points: ``outbox.before_ship``, ``outbox.after_ship``, ``subscription.after_append``,
``delivery.result`` (a leader with a committed result for a request another node holds,
before it delivers it).
"""

from __future__ import annotations

import logging
import os

CRASH_EXIT_CODE = 137
_ENABLED = frozenset(filter(None, os.environ.get("CAIRN_CRASH_AT", "").split(",")))

log = logging.getLogger(__name__)


def crash_point(name: str) -> None:
    if name in _ENABLED:
        log.error("crash point %s reached: exiting now", name)
        logging.shutdown()
        os._exit(CRASH_EXIT_CODE)
