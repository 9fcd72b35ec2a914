"""Partition-processor throughput: drives ``apply_batch`` directly on RocksDB (no log, no SDK).

    .venv/bin/python -m benchmarks.pp_bench --invocations 20000

Each invocation is the counter's journal: Invoke, get, set, output, end (5 records). Prints
records/s and invocations/s and writes benchmarks/results/pp_bench.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from partition_processor.commands import (
    AnnounceLeader,
    End,
    Envelope,
    IngressSink,
    IngressSource,
    Invoke,
    InvokerEffect,
    JournalAppend,
    LeaderDedup,
    LeaderSource,
    Target,
    encode_envelope,
)
from partition_processor.journal import GetState, Output, SetState, Success
from partition_processor.processor import LogEntry, PartitionProcessor
from partition_processor.store_rocksdb import RocksDBStore

NODE = "bench/1"


def records(invocations: int) -> list[bytes]:
    leader = LeaderSource(0, 1, NODE)
    out = [encode_envelope(Envelope(leader, 0, AnnounceLeader(1, NODE)))]
    seq = 0
    for i in range(invocations):
        inv = f"inv_{i:016x}{i:032x}"
        target = Target("Counter", "add", "virtual_object", "exclusive", key=f"k{i % 100}")
        sink = IngressSink(NODE, f"r{i}")
        out.append(
            encode_envelope(Envelope(IngressSource(NODE), i, Invoke(inv, target, b"1", sink=sink)))
        )
        for effect in (
            JournalAppend(1, GetState("count")),
            JournalAppend(2, SetState("count", b"1")),
            JournalAppend(3, Output(Success(b"1"))),
            End(),
        ):
            seq += 1
            out.append(
                encode_envelope(
                    Envelope(leader, i, InvokerEffect(inv, 1, effect), LeaderDedup(1, seq))
                )
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invocations", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    payloads = records(args.invocations)
    with tempfile.TemporaryDirectory() as directory:
        store = RocksDBStore(Path(directory))
        processor = PartitionProcessor(store, 0, NODE)
        started = time.perf_counter()
        for start in range(0, len(payloads), args.batch):
            chunk = payloads[start : start + args.batch]
            processor.apply_batch([LogEntry(start + i, p) for i, p in enumerate(chunk)])
        elapsed = time.perf_counter() - started
        store.close()
    result = {
        "invocations": args.invocations,
        "records": len(payloads),
        "batch": args.batch,
        "seconds": round(elapsed, 3),
        "records_per_s": round(len(payloads) / elapsed),
        "invocations_per_s": round(args.invocations / elapsed),
    }
    print(json.dumps(result))
    Path(__file__).parent.joinpath("results", "pp_bench.json").write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
