"""CPU per append of the embedded log: the whole process, its event-loop thread, its fsync process.

    .venv/bin/python -m benchmarks.log_cpu --appenders 1 --partitions 1    # a round per append
    .venv/bin/python -m benchmarks.log_cpu --appenders 16 --partitions 24

``--appenders`` tasks each await single-record appends to ``LocalLog`` over ``--partitions`` of a
24-partition log (a node's), for ``--seconds`` after a second of warm-up. With one appender every
append is its own commit round, so the event loop's figure is what a round's hand-off to the
fsync process costs (that process's own CPU is the last figure); run it in a baseline tree
(``git archive``, ``PYTHONPATH=``) and this one, alternately, to compare (benchmarks/README.md,
perf4).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from benchmarks.matrix import _cpu_s
from runtime.log import LocalLog


async def measure(appenders: int, partitions: int, seconds: float) -> str:
    with tempfile.TemporaryDirectory(prefix="cairn-log-cpu-") as directory:
        log = LocalLog(Path(directory), 24)
        await log.start()
        count = 0
        stop = False

        async def appender(number: int) -> None:
            nonlocal count
            while not stop:
                await log.append(number % partitions, [b"x" * 100])
                count += 1

        tasks = [asyncio.create_task(appender(n)) for n in range(appenders)]
        await asyncio.sleep(1.0)
        child = log.fsync_pid
        c0, p0, t0, w0 = count, time.process_time(), time.thread_time(), time.monotonic()
        f0 = 0.0 if child is None else _cpu_s(child)
        await asyncio.sleep(seconds)
        c1, p1, t1, w1 = count, time.process_time(), time.thread_time(), time.monotonic()
        f1 = 0.0 if child is None else _cpu_s(child)
        stop = True
        await asyncio.gather(*tasks)
        await log.close()
    n = c1 - c0
    return (
        f"{n / (w1 - w0):8.0f} appends/s, process {1e6 * (p1 - p0) / n:6.1f} us/append, "
        f"event loop {1e6 * (t1 - t0) / n:6.1f} us/append, "
        f"fsync process {1e6 * (f1 - f0) / n:6.1f} us/append"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appenders", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=1, help="of the log's 24")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if not 1 <= args.partitions <= 24:
        parser.error("--partitions must be within 1..24")
    print(asyncio.run(measure(args.appenders, args.partitions, args.seconds)))


if __name__ == "__main__":
    main()
