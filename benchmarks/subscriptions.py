"""Kafka subscription throughput: events produced to a topic → a trivial virtual-object handler
done, end to end, on one node; and the consumer lag while it runs.

    .venv/bin/python -m benchmarks.subscriptions --events 20000 [--bootstrap HOST:PORT]

Starts a node (local log, 4 partitions) and the demo endpoint (``examples.demo:app``) as
subprocesses, and a Tansu broker unless ``--bootstrap`` is given. Subscribes ``Counter/add`` to a
fresh 4-partition topic, produces N events (value ``1``, keys ``key-0..K-1``) and waits until the
counters add up to N. Reports events/s from the first send to the last handler done, and the
highest total lag (``cairn_subscription_lag`` summed over partitions) sampled every 0.25 s.
Appends the result to ``benchmarks/results/subscriptions.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sdk.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


def _spawn(module: str, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env)


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


async def _lag(http: aiohttp.ClientSession, admin: str, sub: str) -> float:
    async with http.get(f"{admin}/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cairn_subscription_lag{") and f'subscription="{sub}"' in line
    )


async def _total(http: aiohttp.ClientSession, admin: str, keys: int) -> int:
    # Admin state reads come from the store: polling adds no invocations to the measured load.
    async def one(i: int) -> int:
        async with http.get(f"{admin}/services/Counter/state/key-{i}") as response:
            value: int = (await response.json())["state"].get("count") or 0
            return value

    return sum(await asyncio.gather(*(one(i) for i in range(keys))))


async def _produce(bootstrap: str, topic: str, events: int, keys: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, b"1", key=f"key-{i % keys}".encode()) for i in range(events)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def run(bootstrap: str, events: int, keys: int, data_dir: str) -> dict[str, object]:
    ingress_port, admin_port, endpoint_port = free_port(), free_port(), free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    node = _spawn(
        "runtime.cli", "server", "--data-dir", data_dir,
        "--ingress-bind", f"127.0.0.1:{ingress_port}", "--admin-bind", f"127.0.0.1:{admin_port}",
        "--partitions", "4", "--log-level", "warning", "--kafka-cluster", f"bench={bootstrap}",
        "--kafka-fetch-max-wait-ms", "10",
    )  # fmt: skip
    endpoint = _spawn("sdk", "examples.demo:app", "--port", str(endpoint_port))
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        kafka_admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await kafka_admin.start()
        await kafka_admin.create_topics([NewTopic(topic, 4, 1)])
        await kafka_admin.close()
        async with aiohttp.ClientSession() as http:
            await _wait_http(http, f"{admin}/health")
            for _ in range(100):
                uri = f"http://127.0.0.1:{endpoint_port}"
                async with http.post(f"{admin}/deployments", json={"uri": uri}) as response:
                    if response.status in (200, 201):
                        break
                await asyncio.sleep(0.1)
            body = {
                "source": f"kafka://bench/{topic}",
                "sink": "service://Counter/add",
                "options": {"auto.offset.reset": "earliest"},
            }
            async with http.post(f"{admin}/subscriptions", json=body) as response:
                assert response.status == 201, await response.text()
                sub = (await response.json())["id"]
            started = time.perf_counter()
            producing = asyncio.create_task(_produce(bootstrap, topic, events, keys))
            max_lag = 0.0
            lags: list[float] = []
            done = 0
            last_check = 0.0
            while done < events:
                await asyncio.sleep(0.25)
                lag = await _lag(http, admin, sub)
                lags.append(lag)
                max_lag = max(max_lag, lag)
                if time.perf_counter() - last_check > 1.0:
                    last_check = time.perf_counter()
                    done = await _total(http, admin, keys)
            elapsed = time.perf_counter() - started
            await producing
            return {
                "date": datetime.date.today().isoformat(),
                "setup": "cairn server --partitions 4 (local log) + python -m sdk "
                "examples.demo:app + tansu, separate processes, 2 cores",
                "events": events,
                "keys": keys,
                "seconds": round(elapsed, 2),
                "events_per_s": round(events / elapsed, 1),
                "max_lag": max_lag,
                "mean_lag": round(sum(lags) / len(lags), 1) if lags else 0.0,
            }
    finally:
        for process in (endpoint, node):
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--bootstrap", help="a running broker; default: start Tansu")
    args = parser.parse_args()
    broker = None
    bootstrap = args.bootstrap
    with tempfile.TemporaryDirectory(prefix="cairn-subs-bench-") as data_dir:
        if bootstrap is None:
            from tests.support.broker import TansuBroker  # the dev broker (DESIGN §10)

            broker = TansuBroker.start(Path(data_dir))
            bootstrap = broker.bootstrap
        try:
            result = asyncio.run(run(bootstrap, args.events, args.keys, data_dir + "/node"))
        finally:
            if broker is not None:
                broker.stop()
    print(json.dumps(result))
    out = ROOT / "benchmarks" / "results" / "subscriptions.jsonl"
    with out.open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
