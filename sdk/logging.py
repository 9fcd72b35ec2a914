"""Handler logging that stays quiet during replay (restate-sdk's ``restate.logging``).

A replayed handler runs its code again up to where its journal ends; lines it logged the first time
would be logged again. ``getLogger`` returns a standard logger with ``RestateLoggingFilter``, which
drops records emitted while the current handler is replaying.
"""

from __future__ import annotations

import logging

from sdk.invocation import current_session

__all__ = ["RestateLoggingFilter", "getLogger"]


class RestateLoggingFilter(logging.Filter):
    """Drops log records emitted while the handler of the current task is replaying its journal."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):
            return False
        session = current_session.get()
        return session is None or not session.machine.replaying


def getLogger(name: str | None = None) -> logging.Logger:  # noqa: N802 - restate-sdk's name
    """``logging.getLogger(name)`` with a ``RestateLoggingFilter`` (added once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RestateLoggingFilter) for f in logger.filters):
        logger.addFilter(RestateLoggingFilter())
    return logger
