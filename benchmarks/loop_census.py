"""What a node's event loop runs, counted by source: a diagnostic, never part of a server.

    python -m benchmarks.loop_census OUT.jsonl -m runtime.cli server --event-loop asyncio ...

Runs the module after ``-m`` with the given arguments (as ``python -m`` would) after wrapping
asyncio's ``Handle._run`` and ``BaseEventLoop._run_once``, so it needs asyncio's own loop (the
node's ``--event-loop asyncio``; uvloop's handles are C). Every second a line with the cumulative
counts goes to OUT.jsonl: ``iterations`` (loop turns, one ``select`` each), ``continued`` (turns
that found callbacks ready, so did not wait), ``callbacks`` (every handle run, by source),
``first`` (the first handle of each turn that waited: what woke the loop) and ``timers``
(``call_at``/``call_later`` by callback). A source is a task's coroutine (``task:<qualname>``;
a supervised task by its name), a transport's read callback (``read:<kind>:<peer port>``: which
connection the bytes came on) or a callback's qualname.
``benchmarks.cluster`` runs its nodes this way when ``CAIRN_LOOP_CENSUS_DIR`` is set (one file
per node); ``python -m benchmarks.loop_census --report FILE...`` prints per-second rates over
the busiest stretch of each file.

The counting costs CPU of its own (a dict update per callback), so figures taken with it are
not the benchmark's: use it to learn what runs, and measure without it.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.base_events
import asyncio.events
import collections
import json
import re
import runpy
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_callbacks: collections.Counter[str] = collections.Counter()
_first: collections.Counter[str] = collections.Counter()
_timers: collections.Counter[str] = collections.Counter()
_state = {"iterations": 0, "continued": 0, "first_pending": False}
_names: dict[Any, str] = {}


def _source(handle: asyncio.events.Handle) -> str:
    callback: Any = getattr(handle, "_callback", None)  # (asyncio's own handle: a diagnostic)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro: Any = owner.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        if name == "SupervisedTask._supervise":  # which one: its name, partition numbers out
            name = "supervised:" + re.sub(r"\d+", "N", owner.get_name())
        return f"task:{name}"
    name = getattr(callback, "__qualname__", None) or type(callback).__name__
    if name.endswith("_read_ready") and owner is not None:
        sock = getattr(owner, "_sock", None)
        try:
            peer = sock.getpeername()[1] if sock is not None else "?"
        except OSError:
            peer = "?"
        return f"read:{name}:{peer}"
    if isinstance(owner, asyncio.Future):
        return f"future:{name}"
    return name


def _install(out: Path) -> None:
    # asyncio's private methods, typed loosely: a diagnostic of this CPython's asyncio.
    handle_class: Any = asyncio.events.Handle
    loop_class: Any = asyncio.base_events.BaseEventLoop
    original_run: Callable[[asyncio.events.Handle], None] = handle_class._run
    original_once: Callable[[Any], None] = loop_class._run_once

    def counted_run(self: asyncio.events.Handle) -> None:
        source = _source(self)
        _callbacks[source] += 1
        if _state["first_pending"]:
            _state["first_pending"] = False
            _first[source] += 1
        original_run(self)

    def counted_once(self: Any) -> None:
        _state["iterations"] += 1
        # A turn with callbacks already ready does not wait in select (a continuation of the
        # previous turn's work); one with none waits for I/O or the earliest timer: a wake-up.
        _state["first_pending"] = True
        if self._ready:
            _state["continued"] += 1
            _state["first_pending"] = False
        original_once(self)

    original_call_at = loop_class.call_at

    def counted_call_at(self: Any, when: float, callback: Any, *args: Any, **kw: Any) -> Any:
        _timers[getattr(callback, "__qualname__", None) or type(callback).__name__] += 1
        return original_call_at(self, when, callback, *args, **kw)

    loop_class.call_at = counted_call_at

    handle_class._run = counted_run
    loop_class._run_once = counted_once

    def dump() -> None:
        with out.open("a") as f:
            while True:
                time.sleep(1.0)
                line = {
                    "t": time.time(),
                    "iterations": _state["iterations"],
                    "continued": _state["continued"],
                    "timers": dict(_timers),
                    "callbacks": dict(_callbacks),
                    "first": dict(_first),
                }
                f.write(json.dumps(line) + "\n")
                f.flush()

    threading.Thread(target=dump, daemon=True, name="loop-census").start()


def _report(paths: list[Path], seconds: int, top: int) -> None:
    for path in paths:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if len(lines) <= seconds:
            print(f"{path}: too short ({len(lines)} s)")
            continue
        # The busiest stretch of ``seconds``: where the iterations grew most.
        best = max(
            range(len(lines) - seconds),
            key=lambda i: lines[i + seconds]["iterations"] - lines[i]["iterations"],
        )
        a, b = lines[best], lines[best + seconds]
        span = b["t"] - a["t"]
        print(
            f"== {path.name}: {(b['iterations'] - a['iterations']) / span:.0f} iterations/s, "
            f"{(b['continued'] - a['continued']) / span:.0f}/s of them with callbacks ready"
        )
        for key in ("first", "callbacks", "timers"):
            rates = {name: (count - a[key].get(name, 0)) / span for name, count in b[key].items()}
            total = sum(rates.values())
            print(f"  {key}: {total:.0f}/s")
            for name, rate in sorted(rates.items(), key=lambda kv: -kv[1])[:top]:
                print(f"    {rate:8.1f}/s  {name}")


def main() -> None:
    if sys.argv[1:2] == ["--report"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--report", nargs="+", type=Path, required=True)
        parser.add_argument("--seconds", type=int, default=20)
        parser.add_argument("--top", type=int, default=25)
        args = parser.parse_args()
        _report(args.report, args.seconds, args.top)
        return
    out, dash_m, module, *rest = sys.argv[1:]
    if dash_m != "-m":
        raise SystemExit("usage: python -m benchmarks.loop_census OUT.jsonl -m MODULE ARGS...")
    _install(Path(out))
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
