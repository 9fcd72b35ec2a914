"""A fixed amount of Python work, timed in CPU time: how much a busy machine inflates CPU time.

    python -m benchmarks.cpu_probe FILE [LOOKUPS PERIOD_S [DUTY]]

This machine has no hardware instruction counter (a VM without a PMU), so the same work cannot be
counted; it can be repeated. Every ``PERIOD_S`` the probe does one unit of interpreter work like
a node's (dict lookups over a working set of a few MB, small objects, string formatting) and
writes its running totals (units done, thread CPU nanoseconds) to FILE. Between two readings,
CPU ns per unit is what that fixed work cost meanwhile: on a machine whose cores are shared by
more busy processes it rises (caches, the scheduler), though the work did not change. A unit
of the default size takes a few ms of CPU (the probe uses about 5% of one core); a small unit
(``LOOKUPS`` 100) takes about as long as a node's event-loop iteration under load (~0.15 ms):
work that wakes, runs briefly and sleeps finds its caches cold more often than long runs do.
Small units with a ``DUTY`` (a share of one core: after each unit it sleeps as long as that
share asks) serve as a stand-in busy process (``--burners``), woken as often as a node is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

PERIOD_S = 0.1
LOOKUPS = 4_000
_KEYS = 50_000  # a working set of a few MB: a node's hot objects do not fit a core's L2 either


def _unit(table: dict[str, list[int]], keys: list[str], lookups: int) -> int:
    total = 0
    step = 7919  # a prime: lookups stride over the whole table, not one cache-warm corner
    index = 0
    for _ in range(lookups):
        index = (index + step) % len(keys)
        values = table[keys[index]]
        total += values[0] + len(f"{index}:{values[1]}")
    return total


def main() -> None:
    out = Path(sys.argv[1])
    lookups = int(sys.argv[2]) if len(sys.argv) > 2 else LOOKUPS
    period_s = float(sys.argv[3]) if len(sys.argv) > 3 else PERIOD_S
    duty = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    keys = [f"key-{i:08d}" for i in range(_KEYS)]
    table = {key: [i, i * 3] for i, key in enumerate(keys)}
    units = 0
    cpu_ns = 0
    tmp = out.with_suffix(".tmp")
    while True:
        started = time.thread_time_ns()
        _unit(table, keys, lookups)
        spent = time.thread_time_ns() - started
        cpu_ns += spent
        units += 1
        tmp.write_text(f"{units} {cpu_ns}\n")
        os.replace(tmp, out)  # a reader never sees half a line
        time.sleep(spent / 1e9 * (1 - duty) / duty if duty > 0 else period_s)


def spawn(
    path: Path, lookups: int = LOOKUPS, period_s: float = PERIOD_S, duty: float = 0.0
) -> subprocess.Popen[bytes]:
    """The probe as a process of its own, writing to ``path``; the caller stops it by PID."""
    root = Path(__file__).resolve().parents[1]
    argv = [sys.executable, "-m", "benchmarks.cpu_probe", str(path), str(lookups), str(period_s)]
    return subprocess.Popen([*argv, str(duty)], cwd=root)


def read(path: Path) -> tuple[int, int]:
    """(units done, CPU ns spent on them) so far; (0, 0) before the first unit."""
    try:
        units, cpu_ns = path.read_text().split()
    except (OSError, ValueError):
        return 0, 0
    return int(units), int(cpu_ns)


if __name__ == "__main__":
    main()


class Probes:
    """Named probes (``name -> (lookups, period_s, duty)``) as processes, read together."""

    def __init__(self, work: Path, sizes: dict[str, tuple[int, float, float]]) -> None:
        self._files = {name: work / f"probe-{name}" for name in sizes}
        self._processes = [
            spawn(self._files[name], lookups, period_s, duty)
            for name, (lookups, period_s, duty) in sizes.items()
        ]

    def read(self) -> dict[str, tuple[int, int]]:
        return {name: read(path) for name, path in self._files.items()}

    @staticmethod
    def cost(
        before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
    ) -> dict[str, float | None]:
        """CPU ms per unit of each probe between two readings."""
        costs: dict[str, float | None] = {}
        for name, (units_then, ns_then) in before.items():
            units_now, ns_now = after[name]
            units = units_now - units_then
            costs[name] = round((ns_now - ns_then) / units / 1e6, 4) if units > 0 else None
        return costs

    @staticmethod
    def cores(
        before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], seconds: float
    ) -> dict[str, float]:
        """The share of a core each probe used between two readings ``seconds`` apart."""
        return {
            name: round((after[name][1] - ns_then) / 1e9 / seconds, 3)
            for name, (_, ns_then) in before.items()
        }

    def stop(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            process.wait(timeout=10)
