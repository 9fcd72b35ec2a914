"""Splits py-spy samples of Cairn nodes into the parts of a request's CPU (benchmarks/README.md).

    .venv/bin/py-spy record --pid PID --duration 20 --rate 50 --format raw --nonblocking \\
        -o node-PID.txt                                  # one per node, during a cluster run
    .venv/bin/python -m benchmarks.profile_parts --cpu-ms-per-request 4.55 node-*.txt

Each sample (a collapsed stack) goes to the first part one of whose markers its stack contains;
a part's share of the samples times the run's CPU ms per request estimates its ms per request.
py-spy counts a thread as busy while it is runnable, so on an overloaded machine the time a
woken process waits for a core shows up in ``EpollSelector.select`` (the "event loop select"
part): read that part as scheduling delay as much as CPU.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

PARTS: list[tuple[str, tuple[str, ...]]] = [
    (
        "result delivery (internal HTTP)",
        ("ResponseDelivery", "InternalClient", "runtime/internal/server.py", "response_route"),
    ),
    ("invocation (gRPC to the endpoint)", ("runtime/invoker/",)),
    ("apply (state machine + RocksDB)", ("apply_batch",)),
    ("ingress HTTP", ("runtime/ingress/", "web_protocol.py")),
    ("Kafka fetch", ("aiokafka/consumer/", "KafkaReads.read", "KafkaReads._fetch")),
    ("Kafka produce", ("aiokafka/producer/", "KafkaLog.append")),
    ("Kafka client, other", ("aiokafka/",)),
    ("event loop select", ("EpollSelector.select",)),
    ("other threads (gRPC, RocksDB)", ("Thread.run",)),
]
OTHER = "other"


def part_of(stack: str) -> str:
    for name, markers in PARTS:
        if any(marker in stack for marker in markers):
            return name
    return OTHER


def count(paths: list[Path]) -> tuple[Counter[str], int]:
    parts: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, samples = line.rpartition(" ")
            if stack:
                parts[part_of(stack)] += int(samples)
                total += int(samples)
    return parts, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profiles", nargs="+", type=Path, help="py-spy --format raw files")
    parser.add_argument("--cpu-ms-per-request", type=float, required=True)
    args = parser.parse_args()
    parts, total = count(args.profiles)
    print("| part | share of samples | ≈ CPU ms/req |\n|---|---|---|")
    for name in [name for name, _ in PARTS] + [OTHER]:
        share = parts[name] / max(total, 1)
        print(f"| {name} | {share:.0%} | {share * args.cpu_ms_per_request:.2f} |")


if __name__ == "__main__":
    main()
