"""The broker-outage part of ``benchmarks.failover``: Tansu stopped (SIGSTOP) under the load of
idempotent clients, then resumed; how long until every request succeeds again."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.cluster_support import ServerNode, add_once, running_cluster


@dataclass
class Attempts:
    """What the idempotent clients saw (times from ``time.perf_counter``)."""

    ends: list[tuple[float, bool]] = field(default_factory=list)  # per attempt: (ended, ok)
    requests: list[tuple[float, float]] = field(default_factory=list)  # (started, succeeded)
    per_key: dict[str, int] = field(default_factory=dict)
    in_flight: dict[int, float] = field(default_factory=dict)  # client -> request started
    outcomes: dict[str, int] = field(default_factory=dict)  # how attempts ended
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
                ok = await add_once(
                    http, ingress, key, idempotency_key, args.attempt_timeout_s, seen.outcomes
                )
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
            async with http.get(
                f"{server.admin}/health", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                if response.status != 200:
                    return False
        except (TimeoutError, aiohttp.ClientError):
            return False
    return True


async def measure_outage(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    async with running_cluster(args, work) as cluster:
        http, servers = cluster.http, cluster.servers
        seen = Attempts()
        load = asyncio.create_task(
            _idempotent_clients(http, [s.ingress for s in servers], args, seen)
        )
        await asyncio.sleep(args.warmup)
        pid = cluster.broker.process.pid
        os.kill(pid, signal.SIGSTOP)
        stopped = time.perf_counter()
        red = 0  # health samples during the outage that were not 200
        samples = 0
        while time.perf_counter() - stopped < args.outage_s:
            samples += 1
            red += not await _health_green_at(http, servers)
            await asyncio.sleep(0.5)
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
        try:
            await asyncio.wait_for(load, 180)
        except TimeoutError:
            raise RuntimeError("requests still failing 180 s after the load stopped") from None
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
        "attempt_outcomes": dict(sorted(seen.outcomes.items())),
        "first_success_after_resume_s": None
        if first_success is None
        else round(first_success - resumed, 2),
        "recovered_s": round(recovered, 2),
        "health_green_after_resume_s": None if health_green is None else round(health_green, 2),
        "health_red_share_during_outage": round(red / samples, 2) if samples else None,
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
