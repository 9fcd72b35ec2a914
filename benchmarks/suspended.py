"""Many suspended invocations: they must hold no open stream, and the node's RSS must stay bounded.

    .venv/bin/python -m benchmarks.suspended --invocations 5000

Starts a node (local log) and an endpoint as subprocesses, sends N invocations that each wait on
an awakeable (inactivity timeout 100 ms), waits until all are suspended, then reports the node's
RSS before/after and the invoker's open attempts (``cairn_invoker_open_attempts`` from /metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from sdk.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _wait_http(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(600):
        try:
            async with http.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} never became ready")


async def _open_attempts(http: aiohttp.ClientSession, admin: str) -> float:
    async with http.get(f"{admin}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("cairn_invoker_open_attempts "):
                return float(line.split()[1])
    raise RuntimeError("no cairn_invoker_open_attempts metric")


async def _count(http: aiohttp.ClientSession, admin: str, status: str) -> int:
    """Invocations with ``status``, following the listing's pages."""
    count = 0
    cursor = ""
    while True:
        url = f"{admin}/invocations?status={status}&limit=1000"
        if cursor:
            url += f"&cursor={cursor}"
        async with http.get(url) as response:
            page = await response.json()
        count += len(page["invocations"])
        if page["next"] is None:
            return count
        cursor = page["next"]


def _spawn(module: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env)


async def run(invocations: int, concurrency: int, wave: int, data_dir: str) -> dict[str, object]:
    ingress_port, admin_port, endpoint_port = free_port(), free_port(), free_port()
    ingress, admin = f"http://127.0.0.1:{ingress_port}", f"http://127.0.0.1:{admin_port}"
    node = _spawn(
        "runtime.cli", "server", "--data-dir", data_dir,
        "--ingress-bind", f"127.0.0.1:{ingress_port}", "--admin-bind", f"127.0.0.1:{admin_port}",
        "--partitions", "4", "--log-level", "warning",
    )  # fmt: skip
    endpoint = _spawn("sdk", "benchmarks.suspend_app:app", "--port", str(endpoint_port))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
            await _wait_http(http, f"{admin}/health")
            for _ in range(100):
                async with http.post(
                    f"{admin}/deployments", json={"uri": f"http://127.0.0.1:{endpoint_port}"}
                ) as response:
                    if response.status in (200, 201):
                        break
                await asyncio.sleep(0.1)
            rss_before = _rss_mib(node.pid)
            started = time.perf_counter()
            semaphore = asyncio.Semaphore(concurrency)

            async def send(i: int) -> None:
                # No content-type: aiohttp would add one, which a handler without input refuses.
                url = f"{ingress}/Waiter/wait/send"
                no_type = ["Content-Type"]
                async with semaphore, http.post(url, skip_auto_headers=no_type) as response:
                    assert response.status == 202, await response.text()

            # Waves keep the in-flight work (and its transient memory) the same for every wave, so
            # the RSS after each wave shows what the suspended invocations themselves cost.
            rss_per_wave: list[float] = []
            suspended = 0
            while suspended < invocations:
                size = min(wave, invocations - suspended)
                await asyncio.gather(*(send(i) for i in range(size)))
                target = suspended + size
                while suspended < target:
                    await asyncio.sleep(0.5)
                    suspended = await _count(http, admin, "suspended")
                rss_per_wave.append(round(_rss_mib(node.pid), 1))
            all_suspended_s = time.perf_counter() - started
            for _ in range(60):  # the last attempts close their streams after the status flips
                if await _open_attempts(http, admin) == 0:
                    break
                await asyncio.sleep(0.5)
            return {
                "invocations": invocations,
                "suspended": suspended,
                "wave": wave,
                "node_rss_mib_per_wave": rss_per_wave,
                "all_suspended_seconds": round(all_suspended_s, 2),
                "open_attempts": await _open_attempts(http, admin),
                "node_rss_mib_before": round(rss_before, 1),
                "node_rss_mib_after": round(_rss_mib(node.pid), 1),
            }
    finally:
        for process in (endpoint, node):
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invocations", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--wave", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cairn-suspended-") as data_dir:
        result = asyncio.run(run(args.invocations, args.concurrency, args.wave, data_dir))
    print(json.dumps(result))
    out = ROOT / "benchmarks" / "results" / "suspended.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
