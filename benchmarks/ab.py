"""Two Cairn builds side by side, in alternating rounds: what a change costs the node per request.

    git archive main | tar -x -C /tmp/before
    .venv/bin/python -m benchmarks.ab --baseline /tmp/before --workloads sleep,workflow --rounds 8

Starts this tree's node and the one in ``--baseline`` (each with the matrix endpoint, as
``benchmarks.matrix --baseline`` does) once, then per workload runs ``--rounds`` pairs of
closed-loop windows at ``--concurrency``, alternating which build goes first. A matrix cell
adds the endpoint's CPU (the same code on both sides) to the node's; here each window also
records the node's own CPU per answered request and that of its event-loop thread alone
(``/proc/<pid>/task/<pid>/stat``), and each round the ratio new/baseline of the node's figure, so
that a change of a few percent shows through the ±5-10% a single window moves on a shared
machine. JSON lines go to ``results/ab.jsonl``; a summary (medians, per-round ratios) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.matrix import RESULTS, System, start_cairn, window

HZ = os.sysconf("SC_CLK_TCK")


def _thread_cpu_s(pid: int, tid: int) -> float:
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


async def _round(
    http: aiohttp.ClientSession, system: System, workload: str, args: argparse.Namespace
) -> dict[str, object]:
    pid = system.server_pid
    loop_before = _thread_cpu_s(pid, pid)
    row = await window(http, system, workload, args.concurrency, args.window)
    loop_s = _thread_cpu_s(pid, pid) - loop_before
    n = int(row["ok"])  # type: ignore[call-overload]
    node_s = float(row["server_cpu_cores"]) * float(row["seconds"])  # type: ignore[arg-type]
    row["node_cpu_ms_per_request"] = round(1000 * node_s / n, 3) if n else None
    row["loop_cpu_ms_per_request"] = round(1000 * loop_s / n, 3) if n else None
    return row


def _summary(rows: list[dict[str, object]], workloads: list[str]) -> str:
    lines = []
    for workload in workloads:
        sides = {
            name: [r for r in rows if r["workload"] == workload and r["system"] == name]
            for name in ("cairn-local", "cairn-local-baseline")
        }
        for name, sel in sides.items():
            med = {
                k: statistics.median(float(r[k]) for r in sel)  # type: ignore[arg-type]
                for k in (
                    "requests_per_s",
                    "cpu_ms_per_request",
                    "node_cpu_ms_per_request",
                    "loop_cpu_ms_per_request",
                )
            }
            lines.append(
                f"{workload} {name}: median {med['requests_per_s']:.1f} req/s, CPU ms/req "
                f"(node + endpoint) {med['cpu_ms_per_request']:.2f}, node "
                f"{med['node_cpu_ms_per_request']:.3f}, node event loop "
                f"{med['loop_cpu_ms_per_request']:.3f}"
            )
        ratios = [
            float(new["node_cpu_ms_per_request"]) / float(old["node_cpu_ms_per_request"])  # type: ignore[arg-type]
            for new, old in zip(sides["cairn-local"], sides["cairn-local-baseline"], strict=True)
        ]
        loop_ratios = [
            float(new["loop_cpu_ms_per_request"]) / float(old["loop_cpu_ms_per_request"])  # type: ignore[arg-type]
            for new, old in zip(sides["cairn-local"], sides["cairn-local-baseline"], strict=True)
        ]
        lines.append(
            f"{workload} node CPU/req new/baseline per round: "
            f"{' '.join(f'{r:.3f}' for r in ratios)} (median {statistics.median(ratios):.3f}); "
            f"event loop: median {statistics.median(loop_ratios):.3f}"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict[str, object]]:
    work = Path(tempfile.mkdtemp(prefix="cairn-ab-"))
    run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    rows: list[dict[str, object]] = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=timeout
    ) as http:
        systems: list[System] = []
        try:
            systems.append(await start_cairn(http, "local", None, [], work))
            systems.append(
                await start_cairn(
                    http, "local", None, [], work, root=args.baseline, suffix="-baseline"
                )
            )
            for workload in args.workloads:
                for system in systems:  # warm-up
                    await window(http, system, workload, 4, 1.0)
                for number in range(args.rounds):
                    for system in systems if number % 2 == 0 else systems[::-1]:
                        row = await _round(http, system, workload, args)
                        row["round"] = number
                        row["run"] = run
                        rows.append(row)
                        print(
                            f"{workload} round {number} {system.name}: "
                            f"{row['requests_per_s']} req/s, node "
                            f"{row['node_cpu_ms_per_request']} ms/req, loop "
                            f"{row['loop_cpu_ms_per_request']}, others "
                            f"{row['others_cpu_cores']} cores",
                            flush=True,
                        )
        finally:
            for system in systems:
                system.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a Cairn source tree")
    parser.add_argument("--workloads", default="sleep,workflow")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--window", type=float, default=6.0, help="seconds per window")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    args.baseline = args.baseline.resolve()
    if not (args.baseline / "runtime" / "cli.py").exists():
        parser.error(f"--baseline {args.baseline}: not a Cairn source tree")
    args.workloads = [w for w in args.workloads.split(",") if w]
    rows = asyncio.run(main_async(args))
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "ab.jsonl", "a") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    print(_summary(rows, args.workloads))


if __name__ == "__main__":
    main()
