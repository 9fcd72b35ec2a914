"""HTTP load generator against a running ingress (e.g. `cairn dev examples.demo:app`).

    .venv/bin/python -m benchmarks.loadgen --scenario greeter --requests 2000 --concurrency 50
    .venv/bin/python -m benchmarks.loadgen --scenario counter --requests 2000 --concurrency 50

Prints requests/s and latency percentiles, and appends the result (with ``--setup``, a note of
what runs behind the URL) to ``benchmarks/results/loadgen_<scenario>.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import aiohttp


def _request(scenario: str, i: int) -> tuple[str, object]:
    if scenario == "greeter":
        return "/Greeter/greet", f"user-{i}"
    if scenario == "counter":
        return f"/Counter/key-{i % 20}/add", 1
    raise SystemExit(f"unknown scenario {scenario!r}")


async def run(url: str, scenario: str, requests: int, concurrency: int) -> dict[str, object]:
    latencies: list[float] = []
    failures = 0
    next_index = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index, failures
        while next_index < requests:
            i = next_index
            next_index += 1
            path, body = _request(scenario, i)
            started = time.perf_counter()
            async with session.post(url + path, json=body) as response:
                await response.read()
                if response.status != 200:
                    failures += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "scenario": scenario,
        "requests": requests,
        "concurrency": concurrency,
        "failures": failures,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(requests / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--scenario", choices=["greeter", "counter"], default="greeter")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--setup", default="", help="what runs behind --url, recorded with the result"
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.scenario, args.requests, args.concurrency))
    result = {"date": time.strftime("%Y-%m-%d"), "setup": args.setup, **result}
    print(json.dumps(result))
    out = Path(__file__).parent / "results" / f"loadgen_{args.scenario}.jsonl"
    with out.open("a") as history:
        history.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
