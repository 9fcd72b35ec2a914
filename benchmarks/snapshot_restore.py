"""Time for a node without local state to become ready: restoring snapshots vs a full replay.

    .venv/bin/python -m benchmarks.snapshot_restore --records 100000 --partitions 4

Writes the counter workload's records (``pp_bench.records``: Invoke, get, set, output, end per
invocation) straight into a local log, then starts real in-process nodes on it:

1. a node with an empty store and no snapshot repository: a full replay of every partition;
2. that node, asked for snapshots (``POST /snapshots``'s code path), writes one per partition;
3. a node whose store was deleted, with the repository: it restores each partition and replays
   only the suffix written after the snapshot (``--suffix`` records per partition).

``--kafka-bootstrap HOST:PORT`` runs the same on fresh Kafka topics (the "fresh node" keeps no
data dir at all). Prints the times and appends a JSON line to
benchmarks/results/snapshot_restore.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import msgspec

from benchmarks.pp_bench import records
from runtime.config import NodeConfig
from runtime.log import KafkaLog, LocalLog, Log
from runtime.metrics import REGISTRY
from runtime.node import Node

RESULTS = Path(__file__).parent / "results" / "snapshot_restore.jsonl"


def _log(config: NodeConfig) -> Log:
    """The partition log the node of ``config`` uses (opened here while no node runs)."""
    if config.log == "kafka":
        return KafkaLog(
            config.kafka_bootstrap,
            f"{config.kafka_topic_prefix}.log",
            config.partitions,
            fetch_max_wait=timedelta(milliseconds=config.kafka_fetch_max_wait_ms),
        )
    return LocalLog(config.data_dir / "log" / "partitions", config.partitions)


async def _fill(config: NodeConfig, partitions: int, per_partition: int) -> None:
    log = _log(config)
    await log.start()
    payloads = records(per_partition // 5)
    for partition in range(partitions):
        for start in range(0, len(payloads), 512):
            await log.append(partition, payloads[start : start + 512])
    await log.close()


async def _append_suffix(config: NodeConfig, partitions: int, count: int) -> None:
    """More records after the snapshot (the same workload, new invocation ids)."""
    log = _log(config)
    await log.start()
    payloads = records(count // 5 + 1)[1 : count + 1]
    for partition in range(partitions):
        await log.append(partition, payloads)
    await log.close()


async def _ready_s(config: NodeConfig) -> tuple[float, Node]:
    node = Node(config)
    started = time.perf_counter()
    await node.start()
    return time.perf_counter() - started, node


async def run(
    records_total: int, partitions: int, suffix: int, bootstrap: str | None
) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        base = NodeConfig(
            data_dir=data,
            partitions=partitions,
            ingress_bind="127.0.0.1:0",
            admin_bind="127.0.0.1:0",
            snapshot_interval_records=0,
            log="kafka" if bootstrap else "local",
            kafka_bootstrap=bootstrap or "",
            kafka_topic_prefix=f"bench-{uuid.uuid4().hex[:8]}",
            kafka_fetch_max_wait_ms=10,
        )
        await _fill(base, partitions, records_total // partitions)
        applied_before = _applied()
        full_s, node = await _ready_s(base)
        full_applied = _applied() - applied_before
        await node.stop()

        repository = f"file://{Path(tmp) / 'snapshots'}"
        with_repo = msgspec.structs.replace(base, snapshot_repository=repository)
        _, node = await _ready_s(with_repo)
        started = time.perf_counter()
        taken = await node.create_snapshots(None)
        snapshot_s = time.perf_counter() - started
        await node.stop()
        await _append_suffix(base, partitions, suffix)

        shutil.rmtree(data / "store")
        applied_before = _applied()
        restore_s, node = await _ready_s(with_repo)
        restore_applied = _applied() - applied_before
        await node.stop()
    return {
        "log": base.log,
        "records": records_total,
        "partitions": partitions,
        "suffix_per_partition": suffix,
        "full_replay_ready_s": round(full_s, 3),
        "full_replay_records_applied": int(full_applied),
        "snapshots_taken": len(taken),
        "snapshot_all_partitions_s": round(snapshot_s, 3),
        "snapshot_bytes": sum(t.size for t in taken),
        "restore_ready_s": round(restore_s, 3),
        "restore_records_applied": int(restore_applied),
    }


def _applied() -> float:
    return REGISTRY.get_sample_value("cairn_records_applied_total") or 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--suffix", type=int, default=1_000, help="records per partition")
    parser.add_argument("--kafka-bootstrap", help="run on Kafka (fresh topics) instead of locally")
    args = parser.parse_args()
    result = asyncio.run(run(args.records, args.partitions, args.suffix, args.kafka_bootstrap))
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
