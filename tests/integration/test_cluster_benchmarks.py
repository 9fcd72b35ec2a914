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
        *("--idle", "0.5"),
        *("--concurrency", "4", "--keys", "8", "--route", "leader", "--burners", "1"),
        "--server-arg=--standby-apply-interval-ms",
        "--server-arg=50",
        *("--profile-dir", str(tmp_path / "profiles")),
    )
    assert result["nodes"] == 1 and result["route"] == "leader" and result["requests"] > 0
    # py-spy sampled the node over the window: raw collapsed stacks, one file per node.
    assert (tmp_path / "profiles" / "leader-n1-n0.txt").exists()
    assert result["server_args"] == ["--standby-apply-interval-ms", "50"]
    assert result["cpu_ms_per_request"] > 0 and result["broker_cpu_ms_per_request"] > 0
    assert result["ratio_to_single_node"] == 1.0
    # One node applies every record of the window (give or take the requests in flight at
    # its edges).
    [share] = result["applied_share"]
    assert 0.5 < share < 1.5
    assert result["partitions_applying"] == [2]
    assert result["idle_node_cpu_s_per_s"] >= 0
    assert "load average" in result["uptime_before"]
    # Work apart from contention: the nodes' threads ran (schedstat); the fixed-work probes and
    # the burner did units of work. perf counts are there where perf can count (else None).
    assert (
        result["node_run_ms_per_request"] > 0 and result["node_runqueue_wait_ms_per_request"] >= 0
    )
    assert result["node_voluntary_switches_per_request"] > 0 and result["burners"] == 1
    load = result["probe_cpu_ms_per_unit_load"]
    assert set(load) == {"coarse", "fine", "burner0"} and load["fine"] > 0
    assert load["coarse"] is None or load["coarse"] > 0  # a unit every 0.1 s: maybe none
    syscalls = result["node_syscalls_per_request"]
    assert syscalls is None or syscalls > 0
    assert "node_instructions_per_request" in result
    assert result["node_apply_batches_per_request"] > 0 and result["probe_cores_load"]["fine"] > 0


def test_cluster_benchmark_offers_a_fixed_rate_with_rate(tmp_path: Path) -> None:
    """--rate: an open loop, so the requests in the window follow the schedule (the same offered
    load at every node count), not the nodes' latency."""
    [result] = _run(
        "benchmarks.cluster",
        tmp_path,
        *("--nodes", "1", "--partitions", "2", "--duration", "3", "--warmup", "1"),
        *("--idle", "0.5", "--no-perf", "--rate", "40", "--concurrency", "64"),
    )
    assert result["rate"] == 40 and result["shed"] == 0 and result["failures"] == 0
    # 40 a second over the window, give or take the requests in flight at its edges.
    assert 0.8 * 40 * result["seconds"] <= result["requests"] <= 1.1 * 40 * result["seconds"]
    assert result["cpu_ms_per_request"] > 0
    assert "open loop at 40 req/s" in (tmp_path / "cluster.md").read_text()


def test_failover_benchmark_times_a_kill(tmp_path: Path) -> None:
    [result] = _run(
        "benchmarks.failover",
        tmp_path,
        *("--parts", "failover", "--session-timeouts", "1000", "--partitions", "2"),
    )
    assert result["session_timeout_ms"] == 1000 and result["partitions_moved"] >= 1
    # Nothing is served on a dead node's partitions before the group notices it.
    assert 0 < result["first_success_s"] <= result["all_moved_partitions_served_s"]


def test_failover_benchmark_times_a_join(tmp_path: Path) -> None:
    [result] = _run(
        "benchmarks.failover",
        tmp_path,
        *("--parts", "join", "--records", "500", "--suffix-s", "0.5", "--partitions", "2"),
    )
    full, restored = result["full_replay"], result["from_snapshots"]
    assert full["snapshot_restores"] == 0 and restored["snapshot_restores"] == 2
    # The full replay applies every record; the restored node only what came after the
    # snapshots (the load, leadership announcements), not the ~500 records before them.
    assert full["records_applied"] >= result["log_records"] >= 500
    assert restored["records_applied"] < full["records_applied"] - 400


def test_failover_benchmark_times_a_broker_outage(tmp_path: Path) -> None:
    [result] = _run(
        "benchmarks.failover",
        tmp_path,
        *("--parts", "outage", "--outage-s", "1", "--warmup", "0.5", "--partitions", "2"),
        *("--concurrency", "4", "--keys", "8", "--quiet-s", "1"),
    )
    assert result["requests"] > 0 and result["counts_exact"] is True
    assert result["recovered_s"] >= 0 and result["health_green_after_resume_s"] is not None
    assert 0 <= result["health_red_share_during_outage"] <= 1
