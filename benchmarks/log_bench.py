"""Each log alone: appends/s and append→read latency (issue 10, item 5).

    .venv/bin/python -m benchmarks.log_bench                      # the embedded log
    .venv/bin/python -m benchmarks.log_bench --logs local,kafka   # and Kafka (starts Tansu)

Throughput: ``--concurrency`` appenders, each awaiting one single-record append (100 bytes)
after the other, spread over ``--partitions`` (4; a node has 24), for ``--seconds`` (the
processor's pattern: small appends from many invocations, which the log must group). Latency:
one appender and one reader tailing the same partition; each record carries its send time and
the reader notes when it arrives.
Prints one JSON line per log and appends it to ``results/log_bench.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import tempfile
import time
from pathlib import Path

from runtime.log.base import Log
from runtime.log.embedded import LocalLog
from runtime.log.kafka import KafkaLog

PARTITIONS = 4
RESULTS = Path(__file__).parent / "results"


async def throughput(log: Log, concurrency: int, seconds: float) -> float:
    partitions = log.partitions
    appended = 0
    deadline = time.perf_counter() + seconds
    payload = b"x" * 100

    async def appender(n: int) -> None:
        nonlocal appended
        while time.perf_counter() < deadline:
            await log.append(n % partitions, [payload])
            appended += 1

    started = time.perf_counter()
    await asyncio.gather(*(appender(n) for n in range(concurrency)))
    return appended / (time.perf_counter() - started)


async def latency(log: Log, samples: int) -> list[float]:
    partition = log.partitions - 1
    start = await log.tail(partition)
    seen: list[float] = []
    done = asyncio.Event()

    async def reader() -> None:
        reading = log.read(partition, start)
        try:
            async for batch in reading:
                now = time.perf_counter()
                for record in batch:
                    (sent,) = struct.unpack(">d", record.payload[:8])
                    seen.append(now - sent)
                if len(seen) >= samples:
                    done.set()
                    return
        finally:
            await reading.aclose()  # type: ignore[attr-defined]

    task = asyncio.create_task(reader())
    for _ in range(samples):
        before = len(seen)
        await log.append(partition, [struct.pack(">d", time.perf_counter()) + b"y" * 92])
        while len(seen) == before and not task.done():  # one record in flight at a time
            await asyncio.sleep(0)
            await asyncio.sleep(0.0005)
    await asyncio.wait_for(done.wait(), 30)
    await task
    return sorted(seen)


async def bench(
    kind: str, concurrency: int, seconds: float, samples: int, partitions: int = PARTITIONS
) -> dict[str, object]:
    broker = None
    with tempfile.TemporaryDirectory(prefix="cairn-logbench-") as directory:
        log: Log
        if kind == "local":
            log = LocalLog(Path(directory), partitions)
        else:
            from tests.support.broker import TansuBroker  # the dev broker (DESIGN §10)

            broker = TansuBroker.start(Path(directory))
            log = KafkaLog(broker.bootstrap, f"logbench-{time.time_ns()}", partitions)
        try:
            await log.start()
            rate = await throughput(log, concurrency, seconds)
            lat = await latency(log, samples)
        finally:
            await log.close()
            if broker is not None:
                broker.stop()
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "log": "kafka (tansu, memory)" if kind == "kafka" else "local",
        "concurrency": concurrency,
        "partitions": partitions,
        "appends_per_s": round(rate),
        "append_to_read_p50_ms": round(lat[len(lat) // 2] * 1000, 2),
        "append_to_read_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logs", default="local", help="local,kafka")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument(
        "--partitions", type=int, default=PARTITIONS, help="spread over (a node has 24)"
    )
    args = parser.parse_args()
    for kind in args.logs.split(","):
        if kind not in ("local", "kafka"):
            sys.exit(f"unknown log {kind!r}: local or kafka")
        result = asyncio.run(
            bench(kind, args.concurrency, args.seconds, args.samples, args.partitions)
        )
        print(json.dumps(result), flush=True)
        with open(RESULTS / "log_bench.jsonl", "a") as out:
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
