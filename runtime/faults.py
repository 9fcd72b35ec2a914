"""Named fault points, for tests of supervision and recovery only (never set in production).

``CAIRN_FAULT_AT=outbox.ship:3`` makes the step ``outbox.ship`` raise ``InjectedFault`` (an
ordinary exception: the node does not exit) the first 3 times it runs; ``name:N:K`` lets the
first K runs pass, then fails N times. Several points are separated by commas. Unset, a fault
point costs one dict lookup. Compare ``runtime.crashpoints`` (exit at a step, as ``kill -9``).

Points: ``outbox.ship`` (before delivering outbox rows), ``timers.fire`` (before proposing due
timers), ``leader.announce`` (before appending ``AnnounceLeader``), ``metadata.apply`` (before
applying a metadata batch), ``worker.apply`` (before applying a partition batch),
``invoker.propose`` (before an attempt appends what the SDK reported).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


class InjectedFault(Exception):
    """Raised by a fault point named in ``CAIRN_FAULT_AT``."""


class FaultPoints:
    """Which named steps fail, and how many more times."""

    def __init__(self, spec: str) -> None:
        # name → [failures left, passes left before them]
        self._points: dict[str, list[int]] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, rest = item.partition(":")
            counts = rest.split(":") if rest else ["1"]
            try:
                times = int(counts[0])
                skip = int(counts[1]) if len(counts) > 1 else 0
            except ValueError as exc:
                raise ValueError(f"CAIRN_FAULT_AT: expected name:N[:K], got {item!r}") from exc
            if len(counts) > 2 or not name:
                raise ValueError(f"CAIRN_FAULT_AT: expected name:N[:K], got {item!r}")
            self._points[name] = [times, skip]

    def hit(self, name: str) -> None:
        """Raise ``InjectedFault`` if this run of step ``name`` is to fail."""
        point = self._points.get(name)
        if point is None:
            return
        if point[1] > 0:
            point[1] -= 1
            return
        if point[0] > 0:
            point[0] -= 1
            log.warning("fault point %s: injecting a failure (%d more to come)", name, point[0])
            raise InjectedFault(f"injected fault at {name}")


_POINTS = FaultPoints(os.environ.get("CAIRN_FAULT_AT", ""))


def fault_point(name: str) -> None:
    """Raise ``InjectedFault`` here if ``CAIRN_FAULT_AT`` says so for this run of ``name``."""
    _POINTS.hit(name)
