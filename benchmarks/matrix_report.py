"""The matrix run's report (``benchmarks.matrix``): its Markdown table and the side benchmarks.

``markdown`` turns the measured cells into a table with each Cairn system's ratio to Restate;
``_side_benchmarks`` runs ``pp_bench`` and ``log_bench`` in their own processes and adds their
figures as Markdown lines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fmt(value: object) -> str:
    return "—" if value is None else str(value)


def markdown(run: str, args: argparse.Namespace, rows: list[dict[str, object]]) -> str:
    """The run as a Markdown table: each Cairn system's cells with the ratio to Restate's."""
    by = {(r["system"], r["workload"], r["concurrency"]): r for r in rows}
    systems = sorted({str(r["system"]) for r in rows if r["system"] != "restate"})
    others = [float(str(r["others_cpu_cores"])) for r in rows]
    lines = [
        f"# Matrix run {run}",
        "",
        f"`{' '.join(sys.argv[1:]) or '(defaults)'}`; windows of {args.window} s, closed loop; "
        f"{os.cpu_count()} cores shared: the rest of the machine used "
        f"{min(others, default=0):.2f}–{max(others, default=0):.2f} cores "
        f"(mean {sum(others) / max(1, len(others)):.2f}) during the windows. "
        "CPU ms/req: CPU seconds of the server and its endpoint per answered request.",
        "",
        "| system | workload | c | req/s | Restate req/s | ratio | p50 ms | Restate p50 | "
        "p99 ms | Restate p99 | RSS MiB | Restate RSS | CPU ms/req | Restate CPU ms/req | "
        "server cores | Restate cores | others' cores | failures |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system in systems:
        for workload in args.workloads:
            for c in args.concurrency:
                mine = by.get((system, workload, c))
                theirs = by.get(("restate", workload, c))
                if mine is None:
                    continue
                ratio = None
                if theirs and float(str(theirs["requests_per_s"])) > 0:
                    ratio = round(
                        float(str(mine["requests_per_s"])) / float(str(theirs["requests_per_s"])), 2
                    )
                t = theirs or {}
                shown = _fmt(ratio) if ratio is None or ratio >= 1 else f"**{ratio}×**"
                lines.append(
                    f"| {system} | {workload} | {c} | {mine['requests_per_s']} | "
                    f"{_fmt(t.get('requests_per_s'))} | {shown} | "
                    f"{_fmt(mine['p50_ms'])} | {_fmt(t.get('p50_ms'))} | {_fmt(mine['p99_ms'])} | "
                    f"{_fmt(t.get('p99_ms'))} | {mine['server_rss_mib_peak']} | "
                    f"{_fmt(t.get('server_rss_mib_peak'))} | {_fmt(mine['cpu_ms_per_request'])} | "
                    f"{_fmt(t.get('cpu_ms_per_request'))} | {mine['server_cpu_cores']} | "
                    f"{_fmt(t.get('server_cpu_cores'))} | {mine['others_cpu_cores']} | "
                    f"{mine['failures']}{'/' + str(t.get('failures')) if t else ''} |"
                )
    return "\n".join(lines) + "\n"


def _side_benchmarks(logs: list[str]) -> str:
    """pp_bench and log_bench, run in their own processes, as Markdown lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pp = subprocess.run(
        [sys.executable, "-m", "benchmarks.pp_bench", "--invocations", "5000"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lb = subprocess.run(
        [sys.executable, "-m", "benchmarks.log_bench", "--logs", ",".join(logs)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    pp_result = json.loads(pp.stdout.strip().splitlines()[-1])
    lines = [
        "| benchmark | figure |",
        "|---|---|",
        f"| pp_bench (counter journal into RocksDB) | {pp_result['records_per_s']} records/s, "
        f"{pp_result['invocations_per_s']} invocations/s |",
    ]
    for line in lb.stdout.strip().splitlines():
        r = json.loads(line)
        lines.append(
            f"| log_bench {r['log']} | {r['appends_per_s']} appends/s (c={r['concurrency']}), "
            f"append→read p50 {r['append_to_read_p50_ms']} ms, "
            f"p99 {r['append_to_read_p99_ms']} ms |"
        )
    return "\n".join(lines) + "\n"
