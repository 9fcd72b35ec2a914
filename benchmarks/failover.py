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
import os
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.cluster_support import (
    RESULTS,
    ClusterSpec,
    Endpoint,
    LoadStats,
    ServerNode,
    append_result,
    closed_loop,
    keys_on,
    log_records,
    register,
    replication_flag,
    stop_all,
    uptime,
    wait_serving,
)
from benchmarks.pp_bench import records as counter_records
from runtime.log import KafkaLog
from runtime.node import config_default
from tests.support.broker import TansuBroker


@dataclass
class Cluster:
    broker: TansuBroker
    spec: ClusterSpec
    endpoint: Endpoint
    servers: list[ServerNode]
    http: aiohttp.ClientSession


@asynccontextmanager
async def _cluster(
    args: argparse.Namespace, work: Path, session_timeout_ms: int | None = None
) -> AsyncIterator[Cluster]:
    """A broker, the endpoint and ``--nodes`` nodes, serving; all stopped on exit."""
    broker = TansuBroker.start(work)
    spec = ClusterSpec(
        broker.bootstrap,
        args.partitions,
        work,
        session_timeout_ms=session_timeout_ms,
        replication=replication_flag(args.replication, args.nodes),
    )
    endpoint = Endpoint(work)
    servers = [ServerNode(spec, f"n{i}") for i in range(args.nodes)]
    timeout = aiohttp.ClientTimeout(total=None)
    try:
        endpoint.spawn()
        for server in servers:
            server.spawn()
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
        ) as http:
            for server in servers:
                await server.wait_ready(http)
            await register(http, servers[0], endpoint)
            await wait_serving(http, servers, args.partitions, timeout_s=120)
            yield Cluster(broker, spec, endpoint, servers, http)
    finally:
        stop_all([*servers, endpoint])
        broker.stop()


async def _add_once(
    http: aiohttp.ClientSession, ingress: str, key: str, idempotency_key: str, timeout_s: float
) -> bool:
    """One attempt of an idempotent ``Counter/add``; True when it succeeded."""
    try:
        async with http.post(
            f"{ingress}/Counter/{key}/add",
            json=1,
            headers={"idempotency-key": idempotency_key},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            await response.read()
            return response.status == 200
    except (TimeoutError, aiohttp.ClientError):
        return False


# ---------------------------------------------------------------------------------------------
# failover


async def _failover(args: argparse.Namespace, work: Path, setting: str) -> dict[str, Any]:
    session_ms = None if setting == "default" else int(setting)
    effective_ms = session_ms or int(str(config_default("cluster_session_timeout_ms")))
    async with _cluster(args, work, session_ms) as cluster:
        http, victim = cluster.http, cluster.servers[-1]
        survivors = cluster.servers[:-1]
        led = await victim.leading(http)
        assert led, "the node to kill leads no partition"
        keys = keys_on(led, args.partitions)
        for i, key in enumerate(keys):  # every probe path works before the kill
            ingress = survivors[i % len(survivors)].ingress
            assert await _add_once(http, ingress, key, uuid.uuid4().hex, 30), "warm-up failed"
        killed = time.perf_counter()
        victim.kill()

        async def probe(i: int, key: str) -> float:
            idempotency_key = uuid.uuid4().hex
            ingress = survivors[i % len(survivors)].ingress
            while True:  # the same idempotency key: a retry attaches to the first attempt
                if await _add_once(http, ingress, key, idempotency_key, args.attempt_timeout_s):
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


async def _join_one(
    http: aiohttp.ClientSession, spec: ClusterSpec, name: str, extra: Sequence[str]
) -> dict[str, Any]:
    node = ServerNode(spec, name, extra)
    node.spawn()
    try:
        ready = await node.wait_ready(http)
        metrics = await node.metrics(http)
    finally:
        node.stop()
    return {
        "ready_s": round(ready, 2),
        "records_applied": int(metrics.get("cairn_records_applied_total", 0)),
        "snapshot_restores": int(metrics.get("cairn_snapshot_restores_total", 0)),
    }


async def _join(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    broker = TansuBroker.start(work)
    spec = ClusterSpec(
        broker.bootstrap, args.partitions, work, replication=replication_flag(args.replication, 2)
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
            total = await log_records(broker.bootstrap, spec.prefix, args.partitions)
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
# broker outage


@dataclass
class Attempts:
    """Every attempt of the idempotent clients: (monotonic end time, succeeded)."""

    ends: list[tuple[float, bool]] = field(default_factory=list)
    requests: list[tuple[float, float]] = field(default_factory=list)  # (started, succeeded)
    per_key: dict[str, int] = field(default_factory=dict)
    in_flight: dict[int, float] = field(default_factory=dict)  # client -> request started
    stop: bool = False


async def _idempotent_clients(
    http: aiohttp.ClientSession, ingresses: Sequence[str], args: argparse.Namespace, seen: Attempts
) -> None:
    async def client(worker: int) -> None:
        i = worker
        while not seen.stop:
            key, idempotency_key = f"key-{i % args.keys}", uuid.uuid4().hex
            started = time.perf_counter()
            seen.in_flight[worker] = started
            attempt = 0
            while True:  # retried until it succeeds, even after stop: nothing is abandoned
                ingress = ingresses[(i + attempt) % len(ingresses)]
                ok = await _add_once(http, ingress, key, idempotency_key, args.attempt_timeout_s)
                seen.ends.append((time.perf_counter(), ok))
                if ok:
                    break
                attempt += 1
                await asyncio.sleep(0.2)
            seen.requests.append((started, time.perf_counter()))
            del seen.in_flight[worker]
            seen.per_key[key] = seen.per_key.get(key, 0) + 1
            i += args.concurrency

    await asyncio.gather(*(client(w) for w in range(args.concurrency)))


async def _health_green_at(http: aiohttp.ClientSession, servers: Sequence[ServerNode]) -> bool:
    for server in servers:
        try:
            async with http.get(f"{server.admin}/health") as response:
                if response.status != 200:
                    return False
        except aiohttp.ClientError:
            return False
    return True


async def _outage(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    async with _cluster(args, work) as cluster:
        http, servers = cluster.http, cluster.servers
        seen = Attempts()
        load = asyncio.create_task(
            _idempotent_clients(http, [s.ingress for s in servers], args, seen)
        )
        await asyncio.sleep(args.warmup)
        pid = cluster.broker.process.pid
        os.kill(pid, signal.SIGSTOP)
        stopped = time.perf_counter()
        await asyncio.sleep(args.outage_s)
        os.kill(pid, signal.SIGCONT)
        resumed = time.perf_counter()
        health_green: float | None = None
        deadline = resumed + args.observe_s
        while time.perf_counter() < deadline:
            now = time.perf_counter()
            if health_green is None and await _health_green_at(http, servers):
                health_green = now - resumed
            waiting = any(started < resumed for started in seen.in_flight.values())
            last_failure = max((t for t, ok in seen.ends if not ok), default=0.0)
            quiet = now - max(last_failure, resumed) > args.quiet_s
            if health_green is not None and not waiting and quiet:
                break
            await asyncio.sleep(0.25)
        seen.stop = True
        await asyncio.wait_for(load, 180)
        counted = await _counts(http, servers[0], seen.per_key)
    outage_requests = [(s, e) for s, e in seen.requests if s < resumed and e > stopped]
    failures_after = [t for t, ok in seen.ends if not ok and t > resumed]
    first_success = min((t for t, ok in seen.ends if ok and t > resumed), default=None)
    waiting_done = max((e for s, e in outage_requests), default=resumed)
    recovered = max([waiting_done, *failures_after, resumed]) - resumed
    return {
        "part": "outage",
        "nodes": args.nodes,
        "partitions": args.partitions,
        "concurrency": args.concurrency,
        "outage_s": args.outage_s,
        "requests": len(seen.requests),
        "requests_caught_by_outage": len(outage_requests),
        "failed_attempts": sum(1 for _, ok in seen.ends if not ok),
        "first_success_after_resume_s": None
        if first_success is None
        else round(first_success - resumed, 2),
        "recovered_s": round(recovered, 2),
        "health_green_after_resume_s": None if health_green is None else round(health_green, 2),
        "counts_exact": counted,
    }


async def _counts(http: aiohttp.ClientSession, server: ServerNode, per_key: dict[str, int]) -> bool:
    """Whether every counter equals the adds that succeeded for it (read from the store; the
    node may still be applying, so ask for up to 30 s)."""
    deadline = time.perf_counter() + 30
    while True:
        exact = True
        for key, want in per_key.items():
            async with http.get(f"{server.admin}/services/Counter/state/{key}") as response:
                state = (await response.json()).get("state", {}) if response.status == 200 else {}
            exact = exact and state.get("count") == want
        if exact or time.perf_counter() > deadline:
            return exact
        await asyncio.sleep(0.5)


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
                f"{r['health_green_after_resume_s']} s); {r['requests_caught_by_outage']} "
                f"requests caught, {r['failed_attempts']} failed attempts, counts exact: "
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

    if "failover" in parts:
        for timeout in args.session_timeouts.split(","):
            run(_failover, timeout)
    if "join" in parts:
        run(_join)
    if "outage" in parts:
        run(_outage)
    load_after = uptime()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    for r in results:
        append_result(
            args.results_dir / "failover.jsonl",
            {"date": stamp, "uptime_before": load_before, "uptime_after": load_after, **r},
        )
    table = _table(results)
    with (args.results_dir / "failover.md").open("a") as f:
        f.write(
            f"\n### {stamp}\n\nLoad before: `{load_before}`  \nLoad after: `{load_after}`\n\n"
            f"{table}\n"
        )
    print(table)


if __name__ == "__main__":
    main()
