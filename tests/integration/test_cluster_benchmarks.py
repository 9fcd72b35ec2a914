"""The cluster benchmarks (benchmarks/cluster.py, benchmarks/failover.py) run end to end with tiny
settings, so that they cannot rot: real Tansu, real nodes, real endpoint, a few seconds each.

The figures themselves are not checked against targets (the machine is shared); only that each
script measured something real and wrote its result lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.harness import ROOT


def _run(module: str, results: Path, *flags: str) -> list[dict[str, Any]]:
    completed = subprocess.run(
        [sys.executable, "-m", module, "--results-dir", str(results), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    name = module.rsplit(".", 1)[1]
    lines = (results / f"{name}.jsonl").read_text().splitlines()
    assert (results / f"{name}.md").read_text().count("|") > 10  # the Markdown table
    return [json.loads(line) for line in lines]


def test_cluster_benchmark_measures_cpu_and_applied_share(tmp_path: Path) -> None:
    [result] = _run(
        "benchmarks.cluster",
        tmp_path,
        *("--nodes", "1", "--partitions", "2", "--duration", "1.5", "--warmup", "0.5"),
        *("--concurrency", "4", "--keys", "8"),
    )
    assert result["nodes"] == 1 and result["requests"] > 0
    assert result["cpu_ms_per_request"] > 0 and result["broker_cpu_ms_per_request"] > 0
    assert result["ratio_to_single_node"] == 1.0
    # One node applies every record of the window (give or take the requests in flight at
    # its edges).
    [share] = result["applied_share"]
    assert 0.5 < share < 1.5
    assert "load average" in result["uptime_before"]
