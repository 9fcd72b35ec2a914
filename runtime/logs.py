"""The node's log lines (README "Logs"): text by default, JSON with ``--log-format json``.

A line about an invocation carries its id and target: the code running for one invocation (an
attempt's task) sets ``bind_invocation`` once, and a filter copies it onto every record logged
in that task; code handling many invocations at once (the apply loop) passes
``extra=invocation_fields(...)`` on the lines about one of them.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

# (invocation id, target) of the invocation the current asyncio task works for. A task copies
# its creator's context, so the attempt's helper tasks (reader, writer, proposer) carry it too.
_invocation: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "cairn_invocation", default=None
)


def bind_invocation(invocation_id: str, target: str = "") -> None:
    """Mark the current task (and the tasks it creates from now on) as working for one
    invocation."""
    _invocation.set((invocation_id, target))


def invocation_fields(invocation_id: str, target: str = "") -> dict[str, str]:
    """``extra=`` of a line about one invocation logged outside its task."""
    return {"invocation_id": invocation_id, "target": target}


class _InvocationFilter(logging.Filter):
    """Adds ``invocation_id`` and ``target`` to a record logged in an invocation's task (and
    ``invocation``, the text form: empty for other records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _invocation.get()
        if bound is not None and not hasattr(record, "invocation_id"):
            record.invocation_id, record.target = bound
        invocation_id = getattr(record, "invocation_id", None)
        if invocation_id is None:
            record.invocation = ""
        else:
            target = getattr(record, "target", "")
            record.invocation = f" [{invocation_id}{' ' + target if target else ''}]"
        return True


class _JsonFormatter(JsonFormatter):
    """One JSON object per line; ``invocation`` (the text form) is left out."""

    def add_fields(
        self,
        log_record: dict[str, object],
        record: logging.LogRecord,
        message_dict: dict[str, object],
    ) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record.pop("invocation", None)
        if not log_record.get("target"):
            log_record.pop("target", None)


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Log to stderr at ``level`` in ``log_format``."""
    handler = logging.StreamHandler()
    handler.addFilter(_InvocationFilter())
    if log_format == "json":
        handler.setFormatter(
            _JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s%(invocation)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
