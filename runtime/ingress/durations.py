"""Parses ``?delay=`` values: humantime (``10s``, ``1m 30s``, ``500ms``) or ISO-8601 (``PT10S``)."""

from __future__ import annotations

import math
import re

from partition_processor.limits import MAX_TIMESTAMP_MS

_HUMAN_UNITS_MS = {
    "ms": 1,
    "msec": 1,
    "millis": 1,
    "s": 1000,
    "sec": 1000,
    "secs": 1000,
    "second": 1000,
    "seconds": 1000,
    "m": 60_000,
    "min": 60_000,
    "mins": 60_000,
    "minute": 60_000,
    "minutes": 60_000,
    "h": 3_600_000,
    "hr": 3_600_000,
    "hrs": 3_600_000,
    "hour": 3_600_000,
    "hours": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "days": 86_400_000,
    "w": 604_800_000,
    "week": 604_800_000,
    "weeks": 604_800_000,
}
_HUMAN_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")
_ISO = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_ISO_MS = {
    "weeks": 604_800_000,
    "days": 86_400_000,
    "hours": 3_600_000,
    "minutes": 60_000,
    "seconds": 1000,
}


class InvalidDuration(ValueError):
    pass


def parse_duration_ms(text: str) -> int:
    """Milliseconds in ``text``; raises ``InvalidDuration`` with a helpful message."""
    value = text.strip()
    if not value:
        raise InvalidDuration("empty duration")
    if value.upper().startswith("P"):
        match = _ISO.match(value.upper())
        if match is None or value.upper() in ("P", "PT"):
            raise InvalidDuration(f"not an ISO-8601 duration: {text!r}")
        total = sum(float(v) * _ISO_MS[k] for k, v in match.groupdict().items() if v)
        return _bounded(total, text)
    total_ms = 0.0
    position = 0
    lowered = value.lower()
    while position < len(lowered):
        part = _HUMAN_PART.match(lowered, position)
        if part is None or part.group(2) not in _HUMAN_UNITS_MS:
            raise InvalidDuration(
                f"not a duration: {text!r} (use e.g. 10s, 1m 30s, 500ms or ISO-8601 PT10S)"
            )
        total_ms += float(part.group(1)) * _HUMAN_UNITS_MS[part.group(2)]
        position = part.end()
    return _bounded(total_ms, text)


def _bounded(total_ms: float, text: str) -> int:
    """Whole milliseconds; longer than any wake time can be (or infinite) is refused."""
    if not math.isfinite(total_ms) or total_ms > MAX_TIMESTAMP_MS:
        raise InvalidDuration(f"duration {text[:60]!r} is too long")
    return int(total_ms)
