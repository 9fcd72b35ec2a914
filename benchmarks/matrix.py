"""Cairn side by side with Restate: the workload × concurrency matrix (issue 10).

    .venv/bin/python -m benchmarks.matrix --restate                 # full run, 10 s windows
    .venv/bin/python -m benchmarks.matrix --restate --window 2 --concurrency 1,64 --workloads greet

Starts everything it measures: a one-node Cairn (``cairn server``, the embedded log; ``--logs
local,kafka`` adds one on Kafka with a Tansu broker, both started anew for each workload) with the
matrix's endpoint (``benchmarks.matrix_app``) in its own process, and with ``--restate`` a Restate
server (npm ``@restatedev/restate-server``) with the same handlers on restate-sdk served by
hypercorn, both installed into ``benchmarks/.restate/`` (git-ignored, never a dependency of Cairn;
installed on first use). Each cell runs the systems one after the other (alternating who goes
first) with a closed-loop HTTP client for ``--window`` seconds, so the ratios compare runs taken
seconds apart on the same shared machine. For each cell it records requests/s, p50/p99 latency, the
server's peak RSS and CPU, and the CPU the rest of the machine used meanwhile (other engineers'
tests), then appends JSON lines to ``results/matrix.jsonl`` and writes ``results/matrix-<run>.md``
(with ``pp_bench`` and the log benchmark, see ``benchmarks.log_bench``; the report is written by
``benchmarks.matrix_report``).
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from benchmarks.matrix_report import _side_benchmarks, markdown
from benchmarks.suspended import _rss_mib, _wait_http
from sdk.ports import free_port

if TYPE_CHECKING:
    from tests.support.broker import TansuBroker

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RESTATE_DIR = ROOT / "benchmarks" / ".restate"
RESTATE_VERSION = "1.7.12"
RESTATE_SDK_VERSION = "1.3.0"
_RESTATE_PACKAGE = "node_modules/@restatedev/restate-server-linux-x64"
RESTATE_BINARY = RESTATE_DIR / _RESTATE_PACKAGE / "bin" / "restate-server"
WORKLOADS = ("greet", "steps", "counter", "counter-hot", "workflow", "sleep")
HZ = os.sysconf("SC_CLK_TCK")


def request(workload: str, run: str, worker: int, i: int) -> tuple[str, object]:
    """The path and JSON body of request ``i`` of ``worker``."""
    if workload == "greet":
        return "/Greeter/greet", f"w{worker}-{i}"
    if workload == "steps":
        return "/Steps/three", "x"
    if workload == "counter":
        return f"/Counter/k{(worker * 7919 + i * 104729) % 1000}/add", 1
    if workload == "counter-hot":
        return "/Counter/hot/add", 1
    if workload == "workflow":
        return f"/Flow/{run}-{worker}-{i}/run", "x"
    if workload == "sleep":
        return "/Sleeper/nap", "x"
    raise ValueError(f"unknown workload {workload!r}")


@dataclass
class System:
    """A running server under test: its ingress and the processes to stop afterwards."""

    name: str
    ingress: str
    server_pid: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for step in self.cleanup:
            step()


def _spawn(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


async def _register(http: aiohttp.ClientSession, admin: str, uri: str) -> None:
    last = ""
    for _ in range(150):
        try:
            async with http.post(f"{admin}/deployments", json={"uri": uri}) as response:
                if response.status in (200, 201):
                    return
                last = f"{response.status} {await response.text()}"
        except aiohttp.ClientError as exc:
            last = repr(exc)
        await asyncio.sleep(0.2)
    raise RuntimeError(f"could not register {uri} at {admin}: {last}")


async def start_cairn(
    http: aiohttp.ClientSession,
    log: str,
    bootstrap: str | None,
    flags: list[str],
    work: Path,
    *,
    loop: str | None = None,
    root: Path = ROOT,
    suffix: str = "",
) -> System:
    """A node and the matrix endpoint, both run from the source tree ``root`` (a baseline build
    exported with ``git archive`` runs from its own folder), on event loop ``loop`` (None: the
    build's default; a baseline build may predate the flag)."""
    ingress_port, admin_port, endpoint_port = free_port(), free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(root)}
    name = f"cairn-{log}{suffix}"
    data = work / name
    loop_flags = [] if loop is None else ["--event-loop", loop]
    argv = [
        sys.executable, "-m", "runtime.cli", "server", "--data-dir", str(data),
        "--ingress-bind", f"127.0.0.1:{ingress_port}", "--admin-bind", f"127.0.0.1:{admin_port}",
        "--log-level", "warning", *loop_flags, *flags,
    ]  # fmt: skip
    if log == "kafka":
        assert bootstrap is not None
        argv += ["--log", "kafka", "--kafka-bootstrap", bootstrap]
        argv += ["--kafka-topic-prefix", f"bench{time.time_ns()}"]
        # Tansu answers a fetch only after its max wait, even when data is there (DESIGN §10):
        # the node's 100 ms default would put 100 ms into every log round trip.
        argv += ["--kafka-fetch-max-wait-ms", "10"]
    node = _spawn(argv, env, work / f"{name}.log", cwd=root)
    endpoint = _spawn(
        [sys.executable, "-m", "sdk", "benchmarks.matrix_app:app", "--port", str(endpoint_port),
         *loop_flags],
        env,
        work / f"{name}-endpoint.log",
        cwd=root,
    )  # fmt: skip
    system = System(name, f"http://127.0.0.1:{ingress_port}", node.pid, [node, endpoint])
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        await _wait_http(http, f"{admin}/health")
        await _register(http, admin, f"http://127.0.0.1:{endpoint_port}")
    except BaseException:
        system.stop()
        raise
    return system


def install_restate() -> None:
    """Restate server (npm) and restate-sdk + hypercorn (PyPI) into benchmarks/.restate/."""
    RESTATE_DIR.mkdir(parents=True, exist_ok=True)
    if not RESTATE_BINARY.exists():
        print(f"installing @restatedev/restate-server@{RESTATE_VERSION} ...", file=sys.stderr)
        subprocess.run(
            ["npm", "install", "--prefix", str(RESTATE_DIR), "--no-audit", "--no-fund",
             f"@restatedev/restate-server@{RESTATE_VERSION}"],
            check=True,
        )  # fmt: skip
    venv = RESTATE_DIR / "venv"
    if not (venv / "bin" / "hypercorn").exists():
        print(f"installing restate-sdk=={RESTATE_SDK_VERSION} + hypercorn ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q",
             f"restate-sdk=={RESTATE_SDK_VERSION}", "hypercorn"],
            check=True,
        )  # fmt: skip


async def start_restate(http: aiohttp.ClientSession, work: Path) -> System:
    install_restate()
    ingress_port, admin_port, fabric_port, endpoint_port = (free_port() for _ in range(4))
    env = {
        **os.environ,
        "RESTATE_LISTEN_MODE": "tcp",
        "RESTATE_BIND_IP": "127.0.0.1",
        "RESTATE_BIND_PORT": str(fabric_port),
        "RESTATE_INGRESS__BIND_PORT": str(ingress_port),
        "RESTATE_ADMIN__BIND_PORT": str(admin_port),
        "RESTATE_DISABLE_TELEMETRY": "true",
        "RESTATE_LOG_FILTER": "warn",
    }
    server = _spawn(
        [str(RESTATE_BINARY), "--no-logo", "--base-dir", str(work / "restate")],
        env,
        work / "restate.log",
    )
    # restate-sdk's recommended hypercorn settings: long-lived HTTP/2 streams without limits.
    config = work / "hypercorn.toml"
    config.write_text(
        f'bind = "127.0.0.1:{endpoint_port}"\n'
        "h2_max_concurrent_streams = 2147483647\n"
        "keep_alive_max_requests = 2147483647\n"
        "keep_alive_timeout = 2147483647\n"
    )
    endpoint = _spawn(
        [str(RESTATE_DIR / "venv" / "bin" / "hypercorn"), "--config", str(config),
         "benchmarks.matrix_restate:app"],
        {**os.environ, "PYTHONPATH": str(ROOT)},
        work / "restate-endpoint.log",
    )  # fmt: skip
    system = System("restate", f"http://127.0.0.1:{ingress_port}", server.pid, [server, endpoint])
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        await _wait_http(http, f"{admin}/health")
        await _register(http, admin, f"http://127.0.0.1:{endpoint_port}")
        await _wait_http(http, f"{system.ingress}/restate/health")
    except BaseException:
        system.stop()
        raise
    return system


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / HZ


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (hypercorn serves from a worker child process)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def _server_rss_mib(pids: list[int]) -> float:
    """Resident memory of the server's processes together (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        try:
            total += _rss_mib(pid)
        except (OSError, RuntimeError):
            continue
    return total


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / HZ


async def window(
    http: aiohttp.ClientSession, system: System, workload: str, concurrency: int, seconds: float
) -> dict[str, object]:
    """One closed-loop window: each worker sends its next request when the last is answered."""
    latencies: list[float] = []
    failures: list[str] = []
    run = f"{system.name}-{workload}-{concurrency}-{time.time_ns()}"
    endpoint = _tree(system.processes[1].pid)
    # The server and its children: Cairn's fsync process (runtime/log/syncers.py) counts as
    # the node's, in CPU and in memory.
    server = _tree(system.server_pid)
    pids = [*server, *endpoint, os.getpid()]
    cpu_before = {pid: _cpu_s(pid) for pid in pids}
    busy_before = _machine_busy_s()
    peak_rss = _server_rss_mib(server)
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(n: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            path, body = request(workload, run, n, i)
            sent = time.perf_counter()
            async with http.post(system.ingress + path, json=body) as response:
                text = await response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - sent)
                else:
                    failures.append(f"{response.status} {text[:200]!r}")

    async def sample() -> None:
        nonlocal peak_rss
        while time.perf_counter() < deadline:
            peak_rss = max(peak_rss, _server_rss_mib(server))
            await asyncio.sleep(0.25)

    await asyncio.gather(sample(), *(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = {pid: _cpu_s(pid) - cpu_before[pid] for pid in pids}
    ours = sum(cpu.values())
    endpoint_cpu = sum(cpu[pid] for pid in endpoint)
    server_cpu = sum(cpu[pid] for pid in server)
    others = max(0.0, _machine_busy_s() - busy_before - ours)
    latencies.sort()
    n = len(latencies)
    return {
        "system": system.name,
        "workload": workload,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "ok": n,
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "requests_per_s": round(n / elapsed, 1),
        "p50_ms": round(latencies[n // 2] * 1000, 2) if n else None,
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1000, 2) if n else None,
        "server_rss_mib_peak": round(peak_rss, 1),
        # CPU per answered request (server + endpoint): what a request costs, whatever share
        # of the shared cores the system got during the window.
        "cpu_ms_per_request": round(1000 * (server_cpu + endpoint_cpu) / n, 2) if n else None,
        "server_cpu_cores": round(server_cpu / elapsed, 2),
        "endpoint_cpu_cores": round(endpoint_cpu / elapsed, 2),
        "loadgen_cpu_cores": round(cpu[os.getpid()] / elapsed, 2),
        "others_cpu_cores": round(others / elapsed, 2),
        "loadavg_1m": os.getloadavg()[0],
    }


async def _start_log_systems(
    http: aiohttp.ClientSession, args: argparse.Namespace, log: str, work: Path
) -> tuple[list[System], TansuBroker | None]:
    """This tree's Cairn (one per event loop) and the baseline's, on ``log`` (with a broker of
    their own for Kafka)."""
    systems: list[System] = []
    broker = None
    bootstrap = None
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    try:
        if log == "kafka":
            from tests.support.broker import TansuBroker  # the dev broker (DESIGN §10)

            broker = TansuBroker.start(work)
            bootstrap = broker.bootstrap
        for loop in args.event_loops:
            suffix = f"-{loop}" if len(args.event_loops) > 1 else ""
            systems.append(
                await start_cairn(
                    http, log, bootstrap, args.cairn_flag, work, loop=loop, suffix=suffix
                )
            )
        if args.baseline is not None:
            systems.append(
                await start_cairn(
                    http, log, bootstrap, args.baseline_flag, work,
                    root=args.baseline, suffix="-baseline",
                )
            )  # fmt: skip
    except BaseException:
        for system in systems:
            system.stop()
        if broker is not None:
            broker.stop()
        raise
    return systems, broker


async def run_matrix(args: argparse.Namespace, run: str, work: Path) -> list[dict[str, object]]:
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=0)
    by_log: dict[str, list[System]] = {}
    brokers: dict[str, TansuBroker | None] = {}
    restate: list[System] = []
    rows: list[dict[str, object]] = []

    def systems() -> list[System]:
        return [s for log in args.logs for s in by_log.get(log, [])] + restate

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        try:
            for log in args.logs:
                by_log[log], brokers[log] = await _start_log_systems(http, args, log, work / log)
            if args.restate:
                restate.append(await start_restate(http, work))
            total = len(args.workloads) * len(args.concurrency) * len(systems())
            done = 0
            for number, workload in enumerate(args.workloads):
                if number and "kafka" in by_log:
                    # Tansu's memory storage gets slower as it grows (its CPU per request doubled
                    # over five 9 s windows of one workload, benchmarks/README.md): each
                    # workload starts on an empty broker, with nodes of its own.
                    for system in by_log["kafka"]:
                        system.stop()
                    old = brokers["kafka"]
                    if old is not None:
                        old.stop()
                    by_log["kafka"], brokers["kafka"] = await _start_log_systems(
                        http, args, "kafka", work / f"kafka-{workload}"
                    )
                for system in systems():  # warm-up: first requests, connections, caches
                    await window(http, system, workload, 4, args.warmup)
                for c in args.concurrency:
                    order = systems() if done % 2 == 0 else list(reversed(systems()))
                    for system in order:
                        row = await window(http, system, workload, c, args.window)
                        row["run"] = run
                        rows.append(row)
                        done += 1
                        print(
                            f"[{done}/{total}] {system.name:12} {workload:11} c={c:<3} "
                            f"{row['requests_per_s']:>8} req/s  p50 {row['p50_ms']} ms  "
                            f"rss {row['server_rss_mib_peak']} MiB  failures {row['failures']}  "
                            f"others {row['others_cpu_cores']} cores",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            for system in systems():
                system.stop()
            for broker in brokers.values():
                if broker is not None:
                    broker.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restate", action="store_true", help="also run Restate, side by side")
    parser.add_argument("--logs", default="local", help="Cairn logs to run: local,kafka")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per measured cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds per workload")
    parser.add_argument("--cairn-flag", action="append", default=[], help="to `cairn server`")
    parser.add_argument(
        "--event-loops",
        default="auto",
        help="Cairn's event loops, one system each: e.g. asyncio,uvloop (default auto)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also run the Cairn build in this source tree (e.g. `git archive` of an older "
        "commit, extracted), as cairn-<log>-baseline: before/after seconds apart",
    )
    parser.add_argument(
        "--baseline-flag", action="append", default=[], help="to the baseline's `cairn server`"
    )
    parser.add_argument("--no-pp", action="store_true", help="skip pp_bench and log_bench")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    args.logs = [s for s in args.logs.split(",") if s]
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.event_loops = [e for e in args.event_loops.split(",") if e]
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
        if not (args.baseline / "runtime" / "cli.py").exists():
            parser.error(f"--baseline {args.baseline}: not a Cairn source tree")
    for w in args.workloads:
        request(w, "", 0, 0)  # refuses an unknown workload before anything starts
    # SIGTERM unwinds like Ctrl-C, so the servers this run started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="cairn-matrix-"))
    print(f"run {run}; logs and data in {work}", file=sys.stderr)
    rows = asyncio.run(run_matrix(args, run, work))
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "matrix.jsonl", "a") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    table = markdown(run, args, rows)
    if not args.no_pp:
        table += "\n" + _side_benchmarks(args.logs)
    (RESULTS / f"matrix-{run}.md").write_text(table)
    print(table)
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
