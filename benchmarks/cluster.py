"""CPU per request of a Cairn cluster of 1, 2, 3 ... nodes on one Kafka (issue 7, "Measure").

    .venv/bin/python -m benchmarks.cluster --nodes 1,2,3 --partitions 8 --replication 2 \
        --duration 30 --concurrency 32

For each node count N: a fresh Tansu broker, the demo endpoint (``examples.demo:app``) and N
``cairn server --cluster --log kafka`` nodes, each a process of its own; the endpoint is
registered on the first node. Closed-loop clients send ``Counter/key-K/add`` to the ingresses in
turn (after ``--warmup`` seconds, for ``--duration`` seconds). Reported per N:

- requests/s and latency;
- CPU seconds per request summed over all nodes, the broker's and the endpoint's
  (``/proc/<pid>/stat`` utime + stime, before and after the window), and the ratio of the nodes'
  figure to the single node's (the target of issue 7: at most 1.25);
- each node's records applied (``cairn_records_applied_total``) as a share of the records
  appended to the log in the window (replica placement aims at R/N; with every node applying
  every partition it is 1.0).

``--replication R`` is passed to the servers only when ``cairn server --help`` has it (capped at
N), so the script measures a checkout with and without replica placement alike. Results: one
JSON line per N in ``RESULTS/cluster.jsonl`` and a Markdown table appended to
``RESULTS/cluster.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import cpu_probe
from benchmarks.cluster_support import (
    RESULTS,
    ClusterSpec,
    Endpoint,
    LoadStats,
    ServerNode,
    add_fetch_wait_flag,
    append_result,
    closed_loop,
    context_switches,
    cpu_seconds,
    cpu_split,
    leader_ingresses,
    open_loop,
    percentile,
    register,
    replication_flag,
    stop_all,
    uptime,
    wait_serving,
)
from benchmarks.cpu_counters import PerfCount, ctxt_split, perf_events, schedstat
from runtime.log import KafkaLog
from tests.support.broker import TansuBroker

TARGET_RATIO = 1.25


async def _measure(args: argparse.Namespace, nodes: int, work: Path) -> dict[str, Any]:
    # Fixed work timed in CPU time alongside (benchmarks/cpu_probe.py): what the machine's
    # contention does to the CPU time of work that does not change, in long runs ("coarse") and
    # in node-sized bursts ("fine"); --burners adds busy processes and nothing else.
    sizes = {"coarse": (cpu_probe.LOOKUPS, cpu_probe.PERIOD_S, 0.0), "fine": (100, 0.002, 0.0)}
    for i in range(args.burners):
        sizes[f"burner{i}"] = (args.burner_lookups, 0.0, args.burner_duty)
    probes = cpu_probe.Probes(work, sizes)
    broker = TansuBroker.start(work)
    replication = replication_flag(args.replication, nodes)
    spec = ClusterSpec(
        broker.bootstrap,
        args.partitions,
        work,
        replication=replication,
        fetch_max_wait_ms=args.kafka_fetch_max_wait_ms,
        extra=args.server_arg,
    )
    endpoint = Endpoint(work)
    servers = [ServerNode(spec, f"n{i}") for i in range(nodes)]
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=0)
    log = KafkaLog(broker.bootstrap, f"{spec.prefix}.log", args.partitions)
    log_started = False
    try:
        endpoint.spawn()
        for server in servers:
            server.spawn()
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            for server in servers:
                await server.wait_ready(http)
            await register(http, servers[0], endpoint)
            await wait_serving(http, servers, args.partitions, timeout_s=120)
            await log.start()
            log_started = True
            # What the nodes burn without requests (polling, heartbeats): it is part of every
            # request's share, more so when requests are few.
            idle_before = [s.cpu() for s in servers]
            probe_from = probes.read()
            await asyncio.sleep(args.idle)
            idle = [s.cpu() - b for s, b in zip(servers, idle_before, strict=True)]
            probe_idle = probes.cost(probe_from, probes.read())
            stats = LoadStats()
            ingresses = [s.ingress for s in servers]
            routes = None
            if args.route == "leader":
                routes = await leader_ingresses(http, servers, args.keys, args.partitions)
            if args.rate:
                traffic = open_loop(
                    http, ingresses, args.rate, args.concurrency, args.keys, stats, routes
                )
            else:
                traffic = closed_loop(http, ingresses, args.concurrency, args.keys, stats, routes)
            load = asyncio.create_task(traffic)
            await asyncio.sleep(args.warmup)
            # perf's window is its own (it starts and stops a few ms around the CPU window), so
            # its counts are divided by the requests completed between its start and its stop.
            perf = PerfCount([s.pid for s in servers], args.perf_events)
            perf_from = stats.completed
            perf.start()
            spies = _profile(args, nodes, servers)
            probe_from = probes.read()
            before = await _sample(http, servers, broker.process.pid, endpoint, log, args)
            stats.counting = True
            started = time.perf_counter()
            await asyncio.sleep(args.duration)
            stats.counting = False
            elapsed = time.perf_counter() - started
            after = await _sample(http, servers, broker.process.pid, endpoint, log, args)
            counts = perf.stop()
            for spy, server in zip(spies, servers, strict=False):
                if spy.wait(30) != 0:
                    print(f"py-spy on node {server.name} failed (exit {spy.returncode})")
            probe_to = probes.read()
            probe_load = probes.cost(probe_from, probe_to)
            probe_cores = probes.cores(probe_from, probe_to, time.perf_counter() - started)
            perf_requests = max(stats.completed - perf_from, 1)
            views = [await s.cluster_view(http) for s in servers]
            stats.stop = True
            await asyncio.wait_for(load, 90)
    finally:
        if log_started:
            await log.close()
        stop_all([*servers, endpoint])
        broker.stop()
        probes.stop()
    result = _result(args, nodes, replication, stats, elapsed, before, after)
    for name, count in counts.items():
        per_request = None if count is None else round(count / perf_requests, 1)
        result[f"node_{name}_per_request"] = per_request
    # Each probe's CPU ms per unit of fixed work while the nodes idled and under the load.
    result["probe_cpu_ms_per_unit_idle"] = probe_idle
    result["probe_cpu_ms_per_unit_load"] = probe_load
    result["burners"] = args.burners
    result["probe_cores_load"] = probe_cores  # the share of a core each probe/burner used
    result["idle_node_cpu_s_per_s"] = round(sum(idle) / args.idle, 3) if args.idle else None
    # What each node says it applies (GET /cluster has "applying" once replicas are placed;
    # before that every node applies every partition).
    applying = [view.get("applying") for view in views]
    result["partitions_applying"] = [args.partitions if a is None else len(a) for a in applying]
    return result


def _profile(
    args: argparse.Namespace, nodes: int, servers: Sequence[ServerNode]
) -> list[subprocess.Popen[bytes]]:
    """With ``--profile-dir``: py-spy on every node over the measured window (raw collapsed
    stacks, one file per node, for ``python -m benchmarks.profile_parts``)."""
    if args.profile_dir is None:
        return []
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    args.profile_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        spy, "record", "--duration", str(max(1, round(args.duration))), "--rate", "50",
        "--format", "raw", "--nonblocking",
    ]  # fmt: skip
    return [
        subprocess.Popen(
            [
                *argv,
                "--pid",
                str(s.pid),
                "-o",
                str(args.profile_dir / f"{args.route}-n{nodes}-{s.name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for s in servers
    ]


async def _sample(
    http: aiohttp.ClientSession,
    servers: Sequence[ServerNode],
    broker_pid: int,
    endpoint: Endpoint,
    log: KafkaLog,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """CPU first (the window's edges), then the counters (a few ms later)."""
    cpu = [s.cpu() for s in servers]
    split = [cpu_split(s.pid) for s in servers]
    switches = [context_switches(s.pid) for s in servers]
    sched = [schedstat(s.pid) for s in servers]
    voluntary = [ctxt_split(s.pid) for s in servers]
    broker_cpu, endpoint_cpu = cpu_seconds(broker_pid), endpoint.cpu()
    metrics = await asyncio.gather(*(s.metrics(http) for s in servers))
    applied = [m.get("cairn_records_applied_total", 0.0) for m in metrics]
    batches = sum(m.get("cairn_partition_apply_batch_records_count", 0.0) for m in metrics)
    records = sum([await log.tail(p) for p in range(args.partitions)])
    return {
        "cpu": cpu,
        "system_cpu": [system for _, system in split],
        "switches": switches,
        "run_ns": sum(run for run, _, _ in sched),
        "wait_ns": sum(wait for _, wait, _ in sched),
        "slices": sum(count for _, _, count in sched),
        "voluntary": sum(v for v, _ in voluntary),
        "involuntary": sum(i for _, i in voluntary),
        "broker_cpu": broker_cpu,
        "endpoint_cpu": endpoint_cpu,
        "applied": applied,
        "apply_batches": batches,
        "records": records,
    }


def _result(
    args: argparse.Namespace,
    nodes: int,
    replication: int | None,
    stats: LoadStats,
    elapsed: float,
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    requests = max(stats.ok, 1)
    node_cpu = [a - b for a, b in zip(after["cpu"], before["cpu"], strict=True)]
    records = after["records"] - before["records"]
    applied = [a - b for a, b in zip(after["applied"], before["applied"], strict=True)]
    p50, p99 = percentile(stats.latencies, 0.5), percentile(stats.latencies, 0.99)
    return {
        "nodes": nodes,
        "partitions": args.partitions,
        "replication": replication,  # None: this server has no --replication (all apply all)
        "concurrency": args.concurrency,
        "rate": args.rate,  # None: a closed loop of ``concurrency`` clients
        "shed": stats.shed,
        "route": args.route,
        "kafka_fetch_max_wait_ms": args.kafka_fetch_max_wait_ms,  # None: the server's default
        "server_args": args.server_arg,
        "seconds": round(elapsed, 2),
        "requests": stats.ok,
        "failures": stats.failed,
        "requests_per_s": round(stats.ok / elapsed, 1),
        "p50_ms": None if p50 is None else round(p50 * 1000, 1),
        "p99_ms": None if p99 is None else round(p99 * 1000, 1),
        "node_cpu_s": [round(c, 2) for c in node_cpu],
        "cpu_ms_per_request": round(sum(node_cpu) / requests * 1000, 3),
        "broker_cpu_ms_per_request": round(
            (after["broker_cpu"] - before["broker_cpu"]) / requests * 1000, 3
        ),
        "endpoint_cpu_ms_per_request": round(
            (after["endpoint_cpu"] - before["endpoint_cpu"]) / requests * 1000, 3
        ),
        # The nodes' kernel share of their CPU and context switches per request: how much of
        # the growth with N is syscalls and scheduling (more, smaller wake-ups) rather than work.
        "node_system_cpu_share": round(
            (sum(after["system_cpu"]) - sum(before["system_cpu"])) / max(sum(node_cpu), 1e-9), 3
        ),
        "node_context_switches_per_request": round(
            (sum(after["switches"]) - sum(before["switches"])) / requests, 1
        ),
        # Contention apart from work: the time the nodes' threads sat runnable waiting for a
        # core (schedstat), against the time they ran; preemptions (involuntary switches) against
        # blocking with nothing to do (voluntary).
        "node_run_ms_per_request": round(_delta(before, after, "run_ns") / requests / 1e6, 3),
        "node_runqueue_wait_ms_per_request": round(
            _delta(before, after, "wait_ns") / requests / 1e6, 3
        ),
        "node_timeslices_per_request": round(_delta(before, after, "slices") / requests, 1),
        "node_voluntary_switches_per_request": round(
            _delta(before, after, "voluntary") / requests, 1
        ),
        "node_involuntary_switches_per_request": round(
            _delta(before, after, "involuntary") / requests, 1
        ),
        # Applied batches (one store write batch each) over all replicas: standby pacing
        # (--standby-apply-interval-ms) makes them fewer and bigger.
        "node_apply_batches_per_request": round(
            (after["apply_batches"] - before["apply_batches"]) / requests, 2
        ),
        "machine_load": uptime(),
        "log_records": records,
        "applied_share": [round(a / records, 3) if records else None for a in applied],
    }


def _delta(before: dict[str, Any], after: dict[str, Any], name: str) -> int:
    value: int = after[name] - before[name]
    return value


def _table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| nodes | R | req/s | p50 ms | CPU ms/req (nodes) | ratio to 1 node | broker CPU ms/req "
        "| endpoint CPU ms/req | applied share per node | partitions applied per node "
        "| nodes' idle CPU s/s | failures | run / runqueue wait ms/req (nodes) "
        "| syscalls/req | epoll_wait/req | futex/req | instructions/req "
        "| probe CPU ms/unit idle / load: coarse; fine | burners |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = r.get("ratio_to_single_node")
        lines.append(
            f"| {r['nodes']} | {r['replication'] or 'all'} | {r['requests_per_s']} | {r['p50_ms']} "
            f"| {r['cpu_ms_per_request']} | {'' if ratio is None else f'{ratio:.2f}×'} "
            f"| {r['broker_cpu_ms_per_request']} | {r['endpoint_cpu_ms_per_request']} "
            f"| {', '.join(str(s) for s in r['applied_share'])} "
            f"| {', '.join(str(p) for p in r['partitions_applying'])} "
            f"| {r['idle_node_cpu_s_per_s']} | {r['failures']} "
            f"| {r['node_run_ms_per_request']} / {r['node_runqueue_wait_ms_per_request']} "
            f"| {_count(r, 'syscalls')} | {_count(r, 'epoll_waits', 'epoll_pwaits')} "
            f"| {_count(r, 'futex')} | {_count(r, 'instructions')} "
            f"| {_probe(r, 'coarse')}; {_probe(r, 'fine')} | {r['burners']} |"
        )
    return "\n".join(lines)


def _probe(result: dict[str, Any], name: str) -> str:
    idle = result["probe_cpu_ms_per_unit_idle"][name]
    load = result["probe_cpu_ms_per_unit_load"][name]
    return f"{idle} / {load}"


def _count(result: dict[str, Any], *names: str) -> str:
    """A perf count per request (several summed), or "n/a" where this machine has none."""
    counts = [result.get(f"node_{name}_per_request") for name in names]
    known = [c for c in counts if c is not None]
    return f"{sum(known):.1f}" if known else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,2,3", help="node counts to measure, e.g. 1,2,3")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--replication", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per N")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="closed-loop clients; with --rate, the most requests in flight",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open loop: requests a second on a fixed schedule, the same for every node count "
        "(default: a closed loop of --concurrency clients)",
    )
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds of the nodes' idle CPU measured first"
    )
    parser.add_argument("--keys", type=int, default=100, help="counter keys")
    parser.add_argument(
        "--route",
        choices=["spread", "leader"],
        default="spread",
        help="spread: each request to the next ingress in turn; leader: each key to the ingress "
        "of the node leading its partition at the start (no result travels between nodes)",
    )
    add_fetch_wait_flag(parser)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="one more argument for every node (repeatable), e.g. "
        "--server-arg=--standby-apply-interval-ms --server-arg=0",
    )
    parser.add_argument(
        "--burners",
        type=int,
        default=0,
        help="stand-in busy processes (cpu_probe in short bursts) beside the nodes: contention "
        "without more nodes, e.g. --nodes 1 --burners 2 against --nodes 3",
    )
    parser.add_argument(
        "--burner-lookups", type=int, default=1000, help="work per burst of a burner (~1 µs each)"
    )
    parser.add_argument(
        "--burner-duty", type=float, default=0.35, help="share of a core each burner uses"
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="py-spy every node over the measured window (--rate 50, raw) into DIR "
        "(ROUTE-nN-NODE.txt); split them with python -m benchmarks.profile_parts",
    )
    parser.add_argument(
        "--no-perf", action="store_true", help="no perf stat (instructions, syscalls) per node"
    )
    args = parser.parse_args()
    args.perf_events = {} if args.no_perf else perf_events()
    if not args.perf_events.get("instructions"):
        print("perf cannot count instructions here (no PMU?): instructions/req is n/a")
    counts = [int(n) for n in args.nodes.split(",")]
    load_before = uptime()
    results: list[dict[str, Any]] = []
    for nodes in counts:
        with tempfile.TemporaryDirectory(prefix=f"cairn-cluster-bench-{nodes}-") as work:
            result = asyncio.run(_measure(args, nodes, Path(work)))
        results.append(result)
        print(json.dumps(result), flush=True)
    single = next((r for r in results if r["nodes"] == 1), None)
    for r in results:
        if single is not None and single["cpu_ms_per_request"]:
            r["ratio_to_single_node"] = round(
                r["cpu_ms_per_request"] / single["cpu_ms_per_request"], 3
            )
    load_after = uptime()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    for r in results:
        append_result(
            args.results_dir / "cluster.jsonl",
            {"date": stamp, "uptime_before": load_before, "uptime_after": load_after, **r},
        )
    table = _table(results)
    with (args.results_dir / "cluster.md").open("a") as f:
        f.write(
            f"\n### {stamp}: {args.partitions} partitions, concurrency {args.concurrency}, "
            f"{f'open loop at {args.rate:g} req/s, ' if args.rate else ''}"
            f"route {args.route}, fetch max wait "
            f"{args.kafka_fetch_max_wait_ms or 'default'} ms, "
            f"{args.duration:g} s per node count, server args {args.server_arg}, "
            f"burners {args.burners}\n\nLoad before: `{load_before}`  \n"
            f"Load after: `{load_after}`\n\n{table}\n"
        )
    print(table)
    print(f"target: CPU per request at most {TARGET_RATIO}× the single node's")


if __name__ == "__main__":
    main()
