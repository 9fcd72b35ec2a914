"""What the cluster benchmarks share: a Tansu broker, Cairn nodes and the demo endpoint as real
processes, their CPU time from /proc, node metrics, and closed-loop counter load.

Every process binds 127.0.0.1 on a free port and is stopped by its own PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from partition_processor.ids import object_partition_key, partition_of
from runtime.log import KafkaLog
from sdk.ports import free_port
from tests.support.broker import TansuBroker

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
APP = "examples.demo:app"
READY_TIMEOUT_S = 180.0  # a node replaying a long log on a busy machine takes a while
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat`` utime + stime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; the fields after its ")" are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process so far (``/proc/<pid>/stat`` utime, stime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / _TICKS, int(fields[12]) / _TICKS


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of a process so far."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if "ctxt_switches:" in line:  # voluntary_... and nonvoluntary_...
                    total += int(line.split(":")[1])
    return total


def uptime() -> str:
    """The machine's load averages (the machine is shared: say how busy it was)."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


@functools.cache
def server_flags() -> str:
    """``cairn server --help`` of this checkout (to pass only the flags it has), in this process:
    ``runtime`` is imported already, and a second interpreter costs seconds on a busy machine."""
    from runtime import cli

    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        cli.main(["server", "--help"])
    return text.getvalue()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


@dataclass
class Child:
    """A child process whose output goes to a log file."""

    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM (a node leaves its group cleanly), SIGKILL after 20 s."""
        stop_all([self])

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


def stop_all(children: Sequence[Child]) -> None:
    """SIGTERM to every child at once (their shutdowns overlap), SIGKILL to those still running
    after 20 s."""
    running = [c.process for c in children if c.alive() and c.process is not None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for process in running:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Endpoint(Child):
    """``python -m sdk examples.demo:app`` (Counter/add is the workload)."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "sdk", APP, "--port", str(self.port)]
        super().__init__(argv, work / "endpoint.log")


@dataclass
class ClusterSpec:
    """What every node of one benchmark cluster shares."""

    bootstrap: str
    partitions: int
    work: Path
    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    session_timeout_ms: int | None = None
    replication: int | None = None  # passed only when the server has --replication
    fetch_max_wait_ms: int | None = None  # None: the server's default
    extra: list[str] = field(default_factory=list)

    def secret_file(self) -> Path:
        """The cluster secret every node of this cluster shares (made once, in ``work``)."""
        path = self.work / "cluster-secret"
        if not path.exists():
            self.work.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
        return path


class ServerNode(Child):
    """``cairn server --cluster --log kafka`` with its own data dir and ports."""

    def __init__(self, spec: ClusterSpec, name: str, extra: Sequence[str] = ()) -> None:
        self.name = name
        self.ingress_port, self.admin_port = free_port(), free_port()
        self.ingress = f"http://127.0.0.1:{self.ingress_port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.data_dir = spec.work / name
        argv = [
            sys.executable, "-m", "runtime.cli", "server", "--cluster", "--log", "kafka",
            "--kafka-bootstrap", spec.bootstrap, "--kafka-topic-prefix", spec.prefix,
            "--partitions", str(spec.partitions),
            "--node-name", name, "--data-dir", str(self.data_dir),
            "--ingress-bind", f"127.0.0.1:{self.ingress_port}",
            "--admin-bind", f"127.0.0.1:{self.admin_port}", "--log-level", "warning",
        ]  # fmt: skip
        if spec.session_timeout_ms is not None:
            argv += ["--cluster-session-timeout-ms", str(spec.session_timeout_ms)]
        if spec.replication is not None:
            argv += ["--replication", str(spec.replication)]
        if spec.fetch_max_wait_ms is not None:
            argv += ["--kafka-fetch-max-wait-ms", str(spec.fetch_max_wait_ms)]
        if "--cluster-secret-file" in server_flags():
            # Servers with node-to-node authentication: a shared secret and a free internal port.
            argv += ["--cluster-secret-file", str(spec.secret_file())]
            argv += ["--internal-bind", "127.0.0.1:0"]
        argv += [*spec.extra, *extra]
        census = os.environ.get("CAIRN_LOOP_CENSUS_DIR")
        if census:
            # A diagnostic run (benchmarks/loop_census.py): what each node's loop runs, counted.
            out = Path(census) / f"{spec.prefix}-{name}.jsonl"
            argv[1:3] = ["-m", "benchmarks.loop_census", str(out), "-m", "runtime.cli"]
            argv += ["--event-loop", "asyncio"]
        super().__init__(argv, spec.work / f"{name}.log")

    async def wait_ready(self, http: aiohttp.ClientSession) -> float:
        """Seconds until ``/restate/health`` answers 200 (a cluster node answers once it has
        caught up with every partition it applies)."""
        started = time.perf_counter()
        deadline = started + READY_TIMEOUT_S
        while time.perf_counter() < deadline:
            if not self.alive():
                raise RuntimeError(f"node {self.name} exited:\n{self.tail()}")
            try:
                async with http.get(f"{self.ingress}/restate/health") as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"node {self.name} not ready in {READY_TIMEOUT_S}s:\n{self.tail()}")

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        """``GET /metrics`` as {sample name with labels: value} (comments dropped)."""
        async with http.get(f"{self.admin}/metrics") as response:
            text = await response.text()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    async def records_applied(self, http: aiohttp.ClientSession) -> float:
        return (await self.metrics(http)).get("cairn_records_applied_total", 0.0)

    async def cluster_view(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """``GET /cluster``: ``leading`` always; with replica placement also ``applying``."""
        async with http.get(f"{self.admin}/cluster") as response:
            body: dict[str, Any] = await response.json()
        return body

    async def leading(self, http: aiohttp.ClientSession) -> list[int]:
        """The partitions this node leads."""
        return [int(p) for p in (await self.cluster_view(http)).get("leading", [])]


def replication_flag(requested: int, nodes: int) -> int | None:
    """``--replication`` for a cluster of ``nodes``: None when this checkout's server has no such
    flag (before replica placement every node applies everything), else at most ``nodes``."""
    if "--replication" not in server_flags():
        return None
    return min(requested, nodes)


async def register(http: aiohttp.ClientSession, node: ServerNode, endpoint: Endpoint) -> None:
    for _ in range(300):
        try:
            async with http.post(f"{node.admin}/deployments", json={"uri": endpoint.uri}) as r:
                if r.status in (200, 201):
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"could not register {endpoint.uri}:\n{endpoint.tail()}")


async def wait_serving(
    http: aiohttp.ClientSession, nodes: Sequence[ServerNode], partitions: int, timeout_s: float
) -> None:
    """Until every node knows the Counter service and every partition has exactly one leader."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        try:
            known = True
            for node in nodes:
                async with http.get(f"{node.admin}/services") as response:
                    services = (await response.json()).get("services", [])
                known = known and any(s.get("name") == "Counter" for s in services)
            led = sorted([p for node in nodes for p in await node.leading(http)])
            if known and led == list(range(partitions)):
                return
        except (aiohttp.ClientError, json.JSONDecodeError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the cluster did not settle: " + "\n".join(n.tail() for n in nodes))


async def log_tails(bootstrap: str, prefix: str, partitions: int) -> list[int]:
    """The end offset of each partition of the partition log (records in it, untrimmed)."""
    log = KafkaLog(bootstrap, f"{prefix}.log", partitions)
    await log.start()
    try:
        return [await log.tail(p) for p in range(partitions)]
    finally:
        await log.close()


async def leader_ingresses(
    http: aiohttp.ClientSession, servers: Sequence[ServerNode], keys: int, partitions: int
) -> list[str]:
    """For each counter key ``key-K``, the ingress of the node leading its partition now."""
    leader_of = {p: server for server in servers for p in await server.leading(http)}
    return [
        leader_of[partition_of(object_partition_key("Counter", f"key-{k}"), partitions)].ingress
        for k in range(keys)
    ]


def keys_on(partitions: Sequence[int], partition_count: int, per_partition: int = 1) -> list[str]:
    """Counter keys that land on ``partitions``, ``per_partition`` on each."""
    found: dict[int, list[str]] = {p: [] for p in partitions}
    i = 0
    while any(len(keys) < per_partition for keys in found.values()):
        key = f"probe-{i}"
        i += 1
        partition = partition_of(object_partition_key("Counter", key), partition_count)
        if partition in found and len(found[partition]) < per_partition:
            found[partition].append(key)
    return [key for keys in found.values() for key in keys]


@dataclass
class LoadStats:
    """What the load (closed or open loop) saw while ``counting`` was on."""

    counting: bool = False
    ok: int = 0
    completed: int = 0  # successes whether counting or not (a window of its own, e.g. perf's)
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    stop: bool = False
    shed: int = 0  # open loop: requests not sent, ``limit`` being in flight (also in failed)


async def _add(
    http: aiohttp.ClientSession,
    ingresses: Sequence[str],
    keys: int,
    i: int,
    stats: LoadStats,
    ingress_of_key: Sequence[str] | None,
) -> bool:
    """Request ``i`` of a load: ``Counter/key-K/add`` (K = i mod keys) to the next ingress in
    turn, or to ``ingress_of_key[K]``; counted in ``stats``. True when it succeeded."""
    key = i % keys
    ingress = ingresses[i % len(ingresses)] if ingress_of_key is None else ingress_of_key[key]
    started = time.perf_counter()
    try:
        async with http.post(f"{ingress}/Counter/key-{key}/add", json=1) as response:
            await response.read()
            ok = response.status == 200
    except (TimeoutError, aiohttp.ClientError):
        ok = False
    stats.completed += ok
    if stats.counting:
        if ok:
            stats.ok += 1
            stats.latencies.append(time.perf_counter() - started)
        else:
            stats.failed += 1
    return ok


async def closed_loop(
    http: aiohttp.ClientSession,
    ingresses: Sequence[str],
    concurrency: int,
    keys: int,
    stats: LoadStats,
    ingress_of_key: Sequence[str] | None = None,
) -> None:
    """``concurrency`` clients each sending ``Counter/key-K/add`` one after the other, every
    request to the next ingress in turn (or, with ``ingress_of_key``, key K's request to
    ``ingress_of_key[K]``), until ``stats.stop``."""

    async def client(worker: int) -> None:
        i = worker
        while not stats.stop:
            ok = await _add(http, ingresses, keys, i, stats, ingress_of_key)
            i += 1
            if not ok:
                await asyncio.sleep(0.05)

    await asyncio.gather(*(client(w) for w in range(concurrency)))


async def open_loop(
    http: aiohttp.ClientSession,
    ingresses: Sequence[str],
    rate: float,
    limit: int,
    keys: int,
    stats: LoadStats,
    ingress_of_key: Sequence[str] | None = None,
) -> None:
    """``Counter/key-K/add`` at ``rate`` requests a second on a fixed schedule, whatever the
    answers' latency (each request a task of its own, every request to the next ingress in
    turn), until ``stats.stop``: the same offered load for every node count, where a closed
    loop's load follows the cluster's latency. A request due while ``limit`` are in flight is
    not sent and counts as a failure (``stats.shed``): the rate is then more than the nodes
    serve."""
    interval = 1.0 / rate
    in_flight: set[asyncio.Task[bool]] = set()
    loop = asyncio.get_running_loop()
    due = loop.time()
    i = 0
    while not stats.stop:
        if len(in_flight) >= limit:
            stats.shed += stats.counting
            stats.failed += stats.counting
        else:
            task = loop.create_task(_add(http, ingresses, keys, i, stats, ingress_of_key))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        i += 1
        due += interval
        await asyncio.sleep(max(0.0, due - loop.time()))
    if in_flight:
        await asyncio.gather(*in_flight)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def add_fetch_wait_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kafka-fetch-max-wait-ms",
        type=int,
        help="passed to every node (default: the server's own default); a short wait makes "
        "idle nodes poll Kafka more often",
    )


def append_result(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(result) + "\n")


@dataclass
class Cluster:
    """A running benchmark cluster (``running_cluster``)."""

    broker: TansuBroker
    spec: ClusterSpec
    endpoint: Endpoint
    servers: list[ServerNode]
    http: aiohttp.ClientSession


@asynccontextmanager
async def running_cluster(
    args: argparse.Namespace, work: Path, session_timeout_ms: int | None = None
) -> AsyncIterator[Cluster]:
    """A broker, the endpoint and ``--nodes`` nodes, serving; all stopped on exit."""
    broker = TansuBroker.start(work)
    spec = ClusterSpec(
        broker.bootstrap,
        args.partitions,
        work,
        session_timeout_ms=session_timeout_ms,
        replication=replication_flag(args.replication, args.nodes),
        fetch_max_wait_ms=args.kafka_fetch_max_wait_ms,
    )
    endpoint = Endpoint(work)
    servers = [ServerNode(spec, f"n{i}") for i in range(args.nodes)]
    timeout = aiohttp.ClientTimeout(total=None)
    try:
        endpoint.spawn()
        for server in servers:
            server.spawn()
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
        ) as http:
            for server in servers:
                await server.wait_ready(http)
            await register(http, servers[0], endpoint)
            await wait_serving(http, servers, args.partitions, timeout_s=120)
            yield Cluster(broker, spec, endpoint, servers, http)
    finally:
        stop_all([*servers, endpoint])
        broker.stop()


async def add_once(
    http: aiohttp.ClientSession,
    ingress: str,
    key: str,
    idempotency_key: str,
    timeout_s: float,
    outcomes: dict[str, int] | None = None,
) -> bool:
    """One attempt of an idempotent ``Counter/add``; True when it succeeded. ``outcomes``
    counts how attempts ended ("200", "503", "timeout", "connection error", ...)."""
    try:
        async with http.post(
            f"{ingress}/Counter/{key}/add",
            json=1,
            headers={"idempotency-key": idempotency_key},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            await response.read()
            outcome = str(response.status)
    except TimeoutError:
        outcome = "timeout"
    except aiohttp.ClientError:
        outcome = "connection error"
    if outcomes is not None:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcome == "200"
