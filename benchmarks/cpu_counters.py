"""Counters that tell real work from core contention (issue 7, "Measure").

CPU time of a process inflates when more busy processes than cores share a machine (caches,
the scheduler); a count of work done does not. Three sources, all per process (every thread):

- ``schedstat``: ``/proc/<pid>/task/*/schedstat``, the time each thread ran, the time it sat
  runnable waiting for a core (the contention itself) and its number of timeslices;
- ``ctxt_split``: voluntary (the thread blocked: it had nothing to do) and involuntary (it was
  preempted: another task wanted the core) context switches;
- ``PerfCount``: ``perf stat`` over a window, attached to the processes: hardware instructions
  when the machine has a PMU (a VM often has none: then ``None``), and kernel tracepoints that
  need no PMU: every syscall, and ``epoll_wait`` (one per asyncio event-loop iteration).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Counted by PerfCount when perf can count them here, under these names.
_EVENTS = {
    "instructions": "instructions",
    "syscalls": "raw_syscalls:sys_enter",
    "epoll_waits": "syscalls:sys_enter_epoll_wait",
    "epoll_pwaits": "syscalls:sys_enter_epoll_pwait",
    "futex": "syscalls:sys_enter_futex",
}


def schedstat(pid: int) -> tuple[int, int, int]:
    """Nanoseconds run, nanoseconds waited runnable for a core, timeslices; all threads."""
    run = wait = slices = 0
    for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError):
            ran, waited, count = (int(f) for f in path.read_text().split()[:3])
            run, wait, slices = run + ran, wait + waited, slices + count
    return run, wait, slices


def ctxt_split(pid: int) -> tuple[int, int]:
    """Voluntary and involuntary context switches of every thread of a process so far."""
    voluntary = involuntary = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError, ValueError):
            for line in status.read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    voluntary += int(line.split(":")[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    involuntary += int(line.split(":")[1])
    return voluntary, involuntary


def perf_events() -> dict[str, str]:
    """The events of ``_EVENTS`` perf can count on this machine (none without perf)."""
    perf = shutil.which("perf")
    if perf is None:
        return {}
    usable: dict[str, str] = {}
    for name, event in _EVENTS.items():
        done = subprocess.run(
            [perf, "stat", "-x", ",", "-e", event, "true"],
            capture_output=True,
            text=True,
            check=False,
        )
        fields = done.stderr.strip().splitlines()[-1].split(",") if done.stderr.strip() else []
        if done.returncode == 0 and fields and fields[0].strip().isdigit():
            usable[name] = event
    return usable


class PerfCount:
    """``perf stat`` attached to ``pids`` from ``start()`` until ``stop()`` (the window)."""

    def __init__(self, pids: Sequence[int], events: dict[str, str]) -> None:
        self._pids = list(pids)
        self._events = events
        self._out = Path(tempfile.mkstemp(prefix="cairn-perf-", suffix=".csv")[1])
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not self._events:
            return
        self._process = subprocess.Popen(
            [
                "perf", "stat", "-x", ",", "-o", str(self._out),
                "-e", ",".join(self._events.values()),
                "-p", ",".join(str(p) for p in self._pids),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> dict[str, int | None]:
        """Each event's count over the window; ``None`` for what this machine cannot count."""
        counts: dict[str, int | None] = dict.fromkeys(_EVENTS)
        if self._process is None:
            return counts
        self._process.send_signal(signal.SIGINT)  # perf prints its counts on SIGINT
        self._process.wait(timeout=30)
        by_event = {event: name for name, event in self._events.items()}
        for line in self._out.read_text().splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2] in by_event and fields[0].strip().isdigit():
                counts[by_event[fields[2]]] = int(fields[0])
        self._out.unlink(missing_ok=True)
        return counts
