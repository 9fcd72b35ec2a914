"""Failover, join and broker-outage times of a Cairn cluster on Tansu (issues 7 and 9, "Measure").

    .venv/bin/python -m benchmarks.failover                      # all three parts
    .venv/bin/python -m benchmarks.failover --parts failover --session-timeouts default,3000
    .venv/bin/python -m benchmarks.failover --parts join --records 100000
    .venv/bin/python -m benchmarks.failover --parts outage --outage-s 30

- **failover**: ``--nodes`` nodes (default 2) serve the demo endpoint; the last one is killed
  with SIGKILL; the clock runs from the kill to the first successful ``Counter/add`` (sent to the
  survivors) on a partition the dead node led, and to the last of those partitions serving.
  Once with the default ``--cluster-session-timeout-ms`` and once per value given.
- **join**: the partition log is filled with ``--records`` records of the counter workload
  (written straight into Kafka, as ``benchmarks.snapshot_restore`` does), a first node replays
  them, snapshots every partition into a ``file://`` repository, then serves ``--suffix-s``
  seconds of real load (records after the snapshot). A fresh node (empty data dir) without the
  repository joins (full replay), is stopped, then a fresh node with the repository joins
  (restore + suffix). Join time: spawn → ``/restate/health`` 200 (a cluster node answers once it
  has caught up with its partitions); the records each applied come from its ``/metrics``.
- **outage**: under closed-loop load of idempotent clients (an ``idempotency-key`` per request,
  retried until it succeeds), Tansu is stopped with SIGSTOP for ``--outage-s`` seconds, then
  SIGCONT. Recovery is the time from SIGCONT until every request that was waiting has succeeded
  and no attempt fails any more; also: first success after SIGCONT, when ``/health`` of every
  node is 200 again, and whether the counters equal the requests that succeeded.

Results: a JSON line per measurement in ``RESULTS/failover.jsonl`` and a Markdown table appended
to ``RESULTS/failover.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.broker_outage import measure_outage
from benchmarks.cluster_support import (
    RESULTS,
    ClusterSpec,
    Endpoint,
    LoadStats,
    ServerNode,
    add_fetch_wait_flag,
    add_once,
    append_result,
    closed_loop,
    keys_on,
    log_tails,
    register,
    replication_flag,
    running_cluster,
    stop_all,
    uptime,
    wait_serving,
)
from benchmarks.pp_bench import records as counter_records
from runtime.config import config_default
from runtime.log import KafkaLog
from tests.support.broker import TansuBroker

# ---------------------------------------------------------------------------------------------
# failover


async def _failover(args: argparse.Namespace, work: Path, setting: str) -> dict[str, Any]:
    session_ms = None if setting == "default" else int(setting)
    effective_ms = session_ms or int(str(config_default("cluster_session_timeout_ms")))
    async with running_cluster(args, work, session_ms) as cluster:
        http, victim = cluster.http, cluster.servers[-1]
        survivors = cluster.servers[:-1]
        led = await victim.leading(http)
        assert led, "the node to kill leads no partition"
        keys = keys_on(led, args.partitions)
        for i, key in enumerate(keys):  # every probe path works before the kill
            ingress = survivors[i % len(survivors)].ingress
            assert await add_once(http, ingress, key, uuid.uuid4().hex, 30), "warm-up failed"
        killed = time.perf_counter()
        victim.kill()

        async def probe(i: int, key: str) -> float:
            idempotency_key = uuid.uuid4().hex
            ingress = survivors[i % len(survivors)].ingress
            while True:  # the same idempotency key: a retry attaches to the first attempt
                if await add_once(http, ingress, key, idempotency_key, args.attempt_timeout_s):
                    return time.perf_counter() - killed
                await asyncio.sleep(0.1)

        async def led_again() -> float:
            while True:
                now_led = {p for s in survivors for p in await s.leading(http)}
                if set(led) <= now_led:
                    return time.perf_counter() - killed
                await asyncio.sleep(0.1)

        served, leadership = await asyncio.gather(
            asyncio.gather(*(probe(i, key) for i, key in enumerate(keys))), led_again()
        )
    return {
        "part": "failover",
        "nodes": args.nodes,
        "partitions": args.partitions,
        "session_timeout_ms": effective_ms,
        "session_timeout": setting,
        "partitions_moved": len(led),
        "first_success_s": round(min(served), 2),
        "all_moved_partitions_served_s": round(max(served), 2),
        "leadership_moved_s": round(leadership, 2),
    }


# ---------------------------------------------------------------------------------------------
# join


async def _fill(bootstrap: str, prefix: str, partitions: int, total: int) -> None:
    """``total`` counter-workload records, spread over the partitions, straight into the log."""
    log = KafkaLog(bootstrap, f"{prefix}.log", partitions)
    await log.start()
    try:
        payloads = counter_records(max(1, total // partitions // 5))
        for partition in range(partitions):
            for start in range(0, len(payloads), 512):
                await log.append(partition, payloads[start : start + 512])
    finally:
        await log.close()


async def _caught_up(http: aiohttp.ClientSession, node: ServerNode, tails: list[int]) -> bool:
    """Whether ``node`` has applied, in every partition it applies, the records that were in
    the log when it started.

    Before replica placement a cluster node answers health only once caught up with every
    partition, and ``GET /cluster`` has no per-replica positions: health is the answer. With
    placement, ``GET /cluster`` lists each partition's replicas and their applied LSN.
    """
    view = await node.cluster_view(http)
    if "partitions" not in view:
        return True
    me, applying = view["node"], view.get("applying") or []
    if not applying:
        return False  # no replicas assigned yet
    for entry in view["partitions"]:
        if entry["partition"] in applying:
            applied = entry.get("applied", {}).get(me)
            if applied is None or applied < tails[entry["partition"]] - 1:
                return False
    return True


async def _join_one(
    http: aiohttp.ClientSession, spec: ClusterSpec, name: str, extra: Sequence[str]
) -> dict[str, Any]:
    tails = await log_tails(spec.bootstrap, spec.prefix, spec.partitions)
    node = ServerNode(spec, name, extra)
    started = time.perf_counter()
    node.spawn()
    try:
        healthy = await node.wait_ready(http)
        while True:
            if await _caught_up(http, node, tails):
                break
            await asyncio.sleep(0.1)
        ready = time.perf_counter() - started
        metrics = await node.metrics(http)
    finally:
        node.stop()
    return {
        "ready_s": round(ready, 2),
        "health_200_s": round(healthy, 2),
        "records_applied": int(metrics.get("cairn_records_applied_total", 0)),
        "snapshot_restores": int(metrics.get("cairn_snapshot_restores_total", 0)),
    }


async def _join(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    broker = TansuBroker.start(work)
    spec = ClusterSpec(
        broker.bootstrap,
        args.partitions,
        work,
        replication=replication_flag(args.replication, 2),
        fetch_max_wait_ms=args.kafka_fetch_max_wait_ms,
    )
    repository = ["--snapshot-repository", f"file://{work / 'snapshots'}"]
    first = ServerNode(spec, "first", [*repository, "--snapshot-interval-records", "0"])
    endpoint = Endpoint(work)
    try:
        await _fill(broker.bootstrap, spec.prefix, args.partitions, args.records)
        first.spawn()
        endpoint.spawn()
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None), connector=aiohttp.TCPConnector(limit=0)
        ) as http:
            first_ready = await first.wait_ready(http)
            await register(http, first, endpoint)
            await wait_serving(http, [first], args.partitions, timeout_s=120)
            async with http.post(f"{first.admin}/snapshots", json={}) as response:
                assert response.status in (200, 201), await response.text()
                taken = len((await response.json()).get("snapshots", []))
            stats = LoadStats()  # records after the snapshots: the suffix a restore replays
            load = asyncio.create_task(closed_loop(http, [first.ingress], 8, 20, stats))
            await asyncio.sleep(args.suffix_s)
            stats.stop = True
            await load
            total = sum(await log_tails(broker.bootstrap, spec.prefix, args.partitions))
            full = await _join_one(http, spec, "fresh-replay", [])
            restored = await _join_one(http, spec, "fresh-snapshot", repository)
    finally:
        stop_all([first, endpoint])
        broker.stop()
    return {
        "part": "join",
        "nodes": 2,  # the first node, and one fresh node at a time
        "partitions": args.partitions,
        "log_records": total,
        "first_node_ready_s": round(first_ready, 2),
        "snapshots_taken": taken,
        "full_replay": full,
        "from_snapshots": restored,
    }


# ---------------------------------------------------------------------------------------------


def _table(results: Sequence[dict[str, Any]]) -> str:
    lines = ["| part | setting | figure |", "|---|---|---|"]
    for r in results:
        if r["part"] == "failover":
            lines.append(
                f"| failover (kill -9) | {r['nodes']} nodes, {r['partitions']} partitions, "
                f"session timeout {r['session_timeout_ms']} ms ({r['session_timeout']}) "
                f"| first success {r['first_success_s']} s; every moved partition served "
                f"{r['all_moved_partitions_served_s']} s; leaders moved "
                f"{r['leadership_moved_s']} s ({r['partitions_moved']} partitions) |"
            )
        elif r["part"] == "join":
            full, snap = r["full_replay"], r["from_snapshots"]
            lines.append(
                f"| join (fresh node) | {r['log_records']} log records, {r['partitions']} "
                f"partitions | full replay: ready {full['ready_s']} s, "
                f"{full['records_applied']} records applied; from snapshots: ready "
                f"{snap['ready_s']} s, {snap['records_applied']} records applied, "
                f"{snap['snapshot_restores']} partitions restored |"
            )
        else:
            lines.append(
                f"| broker outage (SIGSTOP) | {r['outage_s']:g} s, {r['nodes']} nodes, "
                f"{r['concurrency']} idempotent clients | recovered {r['recovered_s']} s after "
                f"SIGCONT (first success {r['first_success_after_resume_s']} s, health green "
                f"{r['health_green_after_resume_s']} s; health not 200 in "
                f"{r['health_red_share_during_outage']:.0%} of samples during the outage); "
                f"{r['requests_caught_by_outage']} "
                f"requests caught, attempts: {r['attempt_outcomes']}; counts exact: "
                f"{r['counts_exact']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="failover,join,outage")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--replication", type=int, default=2)
    parser.add_argument(
        "--session-timeouts",
        default="default,3000",
        help="failover runs: 'default' (no flag) and/or --cluster-session-timeout-ms values",
    )
    parser.add_argument("--attempt-timeout-s", type=float, default=2.0, help="per client attempt")
    parser.add_argument("--records", type=int, default=100_000, help="join: log records")
    parser.add_argument("--suffix-s", type=float, default=3.0, help="join: load after snapshots")
    parser.add_argument("--outage-s", type=float, default=30.0)
    parser.add_argument("--observe-s", type=float, default=120.0, help="outage: at most this")
    parser.add_argument("--warmup", type=float, default=3.0, help="outage: load before SIGSTOP")
    parser.add_argument(
        "--quiet-s", type=float, default=5.0, help="outage: done once no attempt failed this long"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="outage: clients")
    parser.add_argument("--keys", type=int, default=50, help="outage: counter keys")
    add_fetch_wait_flag(parser)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    parts = args.parts.split(",")
    unknown = set(parts) - {"failover", "join", "outage"}
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    load_before = uptime()
    results: list[dict[str, Any]] = []

    def run(measure: Any, *extra: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="cairn-failover-bench-") as work:
            result = asyncio.run(measure(args, Path(work), *extra))
        results.append(result)
        print(json.dumps(result), flush=True)
        # Written at once: a later part that fails does not lose this one.
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        append_result(
            args.results_dir / "failover.jsonl",
            {"date": stamp, "uptime_before": load_before, "uptime_after": uptime(), **result},
        )

    if "failover" in parts:
        for timeout in args.session_timeouts.split(","):
            run(_failover, timeout)
    if "join" in parts:
        run(_join)
    if "outage" in parts:
        run(measure_outage)
    load_after = uptime()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = _table(results)
    with (args.results_dir / "failover.md").open("a") as f:
        f.write(
            f"\n### {stamp}\n\nLoad before: `{load_before}`  \nLoad after: `{load_after}`\n\n"
            f"{table}\n"
        )
    print(table)


if __name__ == "__main__":
    main()
