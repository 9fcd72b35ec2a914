"""The node's memory at saturation and under 10× that load (DESIGN §11: bounded under overload).

    .venv/bin/python -m benchmarks.overload [--duration 10] [--sweep 4,8,16,32,64]

Starts a node (local log) and the demo endpoint as subprocesses. A closed-loop client (each
worker sends its next ``Greeter/greet`` as soon as the previous one is answered) first sweeps the
concurrency to find the one that saturates the node (the smallest reaching 95 % of the best
throughput), then runs at that concurrency and at 10× it, sampling the node's RSS. Answers must be
200 or 429/503 with Retry-After (refused, retried by the worker after it); anything else fails the
run. Prints one JSON object and appends it as a line to ``benchmarks/results/overload.jsonl``.
``--node-flag=--max-concurrent-requests=64`` runs the node with a lower request limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.suspended import _rss_mib, _spawn, _wait_http
from sdk.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


async def _closed_loop(
    http: aiohttp.ClientSession, ingress: str, concurrency: int, duration_s: float, pid: int
) -> dict[str, float]:
    ok = refused = 0
    peak_rss = _rss_mib(pid)
    deadline = time.perf_counter() + duration_s

    async def worker(n: int) -> None:
        nonlocal ok, refused
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            name = f"w{n}-{i}"
            async with http.post(f"{ingress}/Greeter/greet", json=name) as response:
                body = await response.read()
                if response.status == 200:
                    assert json.loads(body) == f"Hello, {name}!", body
                    ok += 1
                elif response.status in (429, 503) and "Retry-After" in response.headers:
                    refused += 1
                    await asyncio.sleep(0.05)  # (a real client would wait Retry-After)
                else:
                    raise AssertionError(f"unexpected answer {response.status}: {body[:200]!r}")

    async def sample() -> None:
        nonlocal peak_rss
        while time.perf_counter() < deadline:
            peak_rss = max(peak_rss, _rss_mib(pid))
            await asyncio.sleep(0.2)

    started = time.perf_counter()
    await asyncio.gather(sample(), *(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "ok": ok,
        "refused": refused,
        "ok_per_second": round(ok / elapsed, 1),
        "node_rss_mib_peak": round(peak_rss, 1),
        "node_rss_mib_end": round(_rss_mib(pid), 1),
    }


async def run(duration_s: float, sweep: list[int], node_flags: list[str]) -> dict[str, object]:
    ingress_port, admin_port, endpoint_port = free_port(), free_port(), free_port()
    ingress, admin = f"http://127.0.0.1:{ingress_port}", f"http://127.0.0.1:{admin_port}"
    with tempfile.TemporaryDirectory(prefix="cairn-overload-") as data_dir:
        node = _spawn(
            "runtime.cli", "server", "--data-dir", data_dir,
            "--ingress-bind", f"127.0.0.1:{ingress_port}",
            "--admin-bind", f"127.0.0.1:{admin_port}",
            "--partitions", "4", "--log-level", "warning", *node_flags,
        )  # fmt: skip
        endpoint = _spawn("sdk", "examples.demo:app", "--port", str(endpoint_port))
        try:
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=300)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                await _wait_http(http, f"{admin}/health")
                for _ in range(100):
                    async with http.post(
                        f"{admin}/deployments", json={"uri": f"http://127.0.0.1:{endpoint_port}"}
                    ) as response:
                        if response.status in (200, 201):
                            break
                    await asyncio.sleep(0.1)
                idle_rss = _rss_mib(node.pid)
                await _closed_loop(http, ingress, sweep[0], 2, node.pid)  # warm-up
                swept = [
                    await _closed_loop(http, ingress, c, duration_s / 2, node.pid) for c in sweep
                ]
                best = max(r["ok_per_second"] for r in swept)
                saturating = next(
                    int(r["concurrency"]) for r in swept if r["ok_per_second"] >= 0.95 * best
                )
                at_saturation = await _closed_loop(http, ingress, saturating, duration_s, node.pid)
                overloaded = await _closed_loop(
                    http, ingress, 10 * saturating, duration_s, node.pid
                )
        finally:
            for process in (endpoint, node):
                process.terminate()
                process.wait(30)
    return {
        "node_flags": node_flags,
        "node_rss_mib_idle": round(idle_rss, 1),
        "sweep": swept,
        "saturating_concurrency": saturating,
        "at_saturation": at_saturation,
        "at_10x": overloaded,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--sweep", default="4,8,16,32,64", help="concurrencies to try")
    parser.add_argument(
        "--node-flag", action="append", default=[], help="passed to `cairn server` (repeatable)"
    )
    args = parser.parse_args()
    sweep = [int(c) for c in args.sweep.split(",")]
    result = asyncio.run(run(args.duration, sweep, args.node_flag))
    print(json.dumps(result))
    with open(ROOT / "benchmarks" / "results" / "overload.jsonl", "a") as out:
        out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
