"""``cairn server --workers N``: N node processes on one machine that form one cluster (DESIGN §8).

Python runs one core per process, so one node per core is how a machine's cores all work. Each
worker is a full cluster node (``--cluster`` on the given Kafka) named ``<node-name>-<i>`` with
its own data dir ``<data-dir>/worker-<i>``; the workers share the ingress and admin ports through
SO_REUSEPORT (the kernel spreads connections over them).

The parent process serves nothing. It starts the workers, forwards SIGTERM/SIGINT to them (each
stops gracefully within the shutdown timeout), restarts a worker that died (with backoff, logged),
and gives up — stopping the others and exiting non-zero — when a worker that never served keeps
failing to start, since then something an operator must fix is wrong (a taken port, an
unreachable broker).

A worker is ``python -m runtime.workers``: it reads its ``NodeConfig`` (JSON) on stdin and writes
one line on the ready pipe once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePath

import msgspec

from runtime.config import NodeConfig, split_bind
from runtime.internal import advertised_host, read_cluster_secret

log = logging.getLogger(__name__)

READY_LINE = b"ready\n"
# Consecutive failed starts after which the parent gives up (of a worker that never served).
START_ATTEMPTS = 3
# Restart delays: doubled after each death that follows a short run, reset after a long run.
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 30.0
_LONG_RUN_S = 60.0
# Past its own shutdown timeout a worker exits by itself (its watchdog); this much more and the
# parent kills it.
_STOP_MARGIN_S = 5.0
GIVE_UP_EXIT_CODE = 1


def prepare_workers(config: NodeConfig) -> NodeConfig:
    """Check what N workers need and return the config they derive from (``ValueError`` with
    the reason, one line). Without ``--cluster-secret-file`` the workers share a secret made
    once in ``<data-dir>/cluster-secret``."""
    if config.workers < 1:
        raise ValueError("--workers must be at least 1")
    if config.workers == 1:
        return config
    if config.log != "kafka":
        raise ValueError(
            f"--workers {config.workers} needs --log kafka: the local log is one process's "
            "files (use --workers 1, or --log kafka)"
        )
    for flag, bind in (
        ("--ingress-bind", config.ingress_bind),
        ("--admin-bind", config.admin_bind),
    ):
        host, port = split_bind(bind)
        if port == 0:
            raise ValueError(f"{flag} {bind}: --workers shares one port, give its number")
        _check_port_free(flag, host, port)
    try:
        internal_host, _ = split_bind(config.internal_bind)
    except ValueError as exc:
        raise ValueError(f"--internal-bind: {exc}") from exc
    advertised_host(config.advertised_address, internal_host)
    secret_file = config.cluster_secret_file or _own_secret(config.data_dir)
    read_cluster_secret(secret_file)
    return msgspec.structs.replace(config, cluster_secret_file=secret_file)


def _own_secret(data_dir: Path) -> str:
    """``<data-dir>/cluster-secret``, made (random, owner-only) unless it exists."""
    path = data_dir / "cluster-secret"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return str(path)
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_hex(32) + "\n")
    return str(path)


def _check_port_free(flag: str, host: str, port: int) -> None:
    # The workers bind with SO_REUSEPORT, which lets them join any other process of this user
    # that does too (e.g. a second `cairn server --workers` on the same ports): bind once without
    # it first, so a port in use is refused as it is with one worker.
    host = host.strip("[]")  # an IPv6 address in brackets
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ValueError(f"{flag} {host}:{port}: {exc.strerror or exc}") from exc


def worker_config(config: NodeConfig, index: int) -> NodeConfig:
    """The config of worker ``index`` (1-based): a cluster node with its own name, data dir and
    internal port."""
    internal_host, _ = split_bind(config.internal_bind)
    return msgspec.structs.replace(
        config,
        node_name=f"{config.node_name}-{index}",
        data_dir=config.data_dir / f"worker-{index}",
        cluster=True,
        # Its own node-to-node port (any free one, advertised with its number): the ingress and
        # admin ports are shared, so they cannot tell the workers apart.
        internal_bind=f"{internal_host}:0",
    )


def encode_config(config: NodeConfig) -> bytes:
    return msgspec.json.encode(config, enc_hook=_encode_path)


def decode_config(data: bytes) -> NodeConfig:
    return msgspec.json.decode(data, type=NodeConfig, dec_hook=_decode_path)


def _encode_path(value: object) -> object:
    if isinstance(value, PurePath):
        return str(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def _decode_path(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot decode {kind!r}")


@dataclass
class _Worker:
    index: int
    config: NodeConfig
    process: asyncio.subprocess.Process | None = None
    failed_starts: int = 0
    backoff_s: float = _FIRST_BACKOFF_S


class WorkerSet:
    """The parent: runs ``config.workers`` workers until a stop signal or a give-up."""

    def __init__(self, config: NodeConfig, *, log_level: str = "INFO") -> None:
        self._config = config
        self._log_level = log_level
        self._workers = [_Worker(i, worker_config(config, i)) for i in range(1, config.workers + 1)]
        self._stopping = asyncio.Event()
        self._gave_up: str | None = None
        self._served: set[int] = set()  # workers that got to serve at least once

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (exit code 0 when every worker stopped cleanly) or until a
        worker keeps failing to start (``GIVE_UP_EXIT_CODE``)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        keepers = [asyncio.create_task(self._supervise(w)) for w in self._workers]
        try:
            await self._stopping.wait()
        finally:
            clean = await self._stop_all()
            await asyncio.gather(*keepers, return_exceptions=True)
        if self._gave_up is not None:
            print(f"cairn: {self._gave_up}", file=sys.stderr, flush=True)
            return GIVE_UP_EXIT_CODE
        return 0 if clean else 1

    async def _supervise(self, worker: _Worker) -> None:
        try:
            await self._keep_running(worker)
        except Exception as exc:
            # A bug here must not leave the workers running unsupervised: stop them all.
            log.exception("supervising worker %d failed", worker.index)
            self._gave_up = f"supervising worker {worker.index} failed: {exc!r}"
            self._stopping.set()

    async def _keep_running(self, worker: _Worker) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            ready = await self._run_once(worker)
            if self._stopping.is_set():
                return
            code = worker.process.returncode if worker.process is not None else None
            if not ready:
                worker.failed_starts += 1
                # Only a worker that never served gives up: that is a setting or an environment
                # to fix (a taken port, a wrong broker address). One that served before is
                # restarted for as long as it takes (e.g. a broker outage), the others serving.
                if worker.failed_starts >= START_ATTEMPTS and worker.index not in self._served:
                    self._gave_up = (
                        f"worker {worker.index} ({worker.config.node_name}) failed to start "
                        f"{worker.failed_starts} times in a row (last exit code {code}); "
                        "stopping every worker: see its log lines above"
                    )
                    self._stopping.set()
                    return
            else:
                worker.failed_starts = 0
            if time.monotonic() - started > _LONG_RUN_S:
                worker.backoff_s = _FIRST_BACKOFF_S
            delay = worker.backoff_s
            worker.backoff_s = min(_MAX_BACKOFF_S, worker.backoff_s * 2)
            log.warning(
                "worker %d (%s) exited with code %s %s; restarting it in %.1f s",
                worker.index,
                worker.config.node_name,
                code,
                "after serving" if ready else "before it served",
                delay,
            )
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                pass

    async def _run_once(self, worker: _Worker) -> bool:
        """Start the worker and wait for it to exit; True if it got to serve."""
        read_fd, write_fd = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "runtime.workers",
                "--ready-fd",
                str(write_fd),
                "--parent-pid",
                str(os.getpid()),
                "--log-level",
                self._log_level,
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)  # the worker holds the only write end: EOF when it exits
        worker.process = process
        if self._stopping.is_set():  # the stop came while it was being started
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        log.info(
            "worker %d (%s) started: pid %d", worker.index, worker.config.node_name, process.pid
        )
        assert process.stdin is not None
        try:
            process.stdin.write(encode_config(worker.config))
            await process.stdin.drain()
            process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died at once: its exit code and output tell why
        ready = await _read_line(read_fd) == READY_LINE
        if ready:
            self._served_once(worker)
        await process.wait()
        return ready

    def _served_once(self, worker: _Worker) -> None:
        first = len(self._served) < len(self._workers)
        self._served.add(worker.index)
        if first and len(self._served) == len(self._workers):
            config = self._config
            print(
                f"cairn: {config.workers} workers ready (ingress http://{config.ingress_bind}, "
                f"admin http://{config.admin_bind})",
                flush=True,
            )

    async def _stop_all(self) -> bool:
        """SIGTERM every live worker and wait for them; True if all exited with 0."""
        self._stopping.set()
        live = [
            w.process
            for w in self._workers
            if w.process is not None and w.process.returncode is None
        ]
        for process in live:
            with contextlib.suppress(ProcessLookupError):  # it exited just now
                process.send_signal(signal.SIGTERM)
        if live:
            log.info("stopping %d worker process(es)", len(live))
        timeout_s = self._config.shutdown_timeout_ms / 1000 + _STOP_MARGIN_S
        if not live:
            # Every worker had already exited (say, all failed at start): asyncio.wait refuses
            # an empty set ("Set of Tasks/Futures is empty"), which ended the parent with a trace.
            return all(w.process is None or w.process.returncode == 0 for w in self._workers)
        _, pending = await asyncio.wait(
            [asyncio.ensure_future(p.wait()) for p in live], timeout=timeout_s
        )
        for process in live:
            if process.returncode is None:
                log.error("worker pid %d did not stop in %.0f s: killed", process.pid, timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await asyncio.gather(*pending, return_exceptions=True)
        return not pending and all(p.returncode == 0 for p in live)


async def _read_line(fd: int) -> bytes:
    """The line written on the ready pipe (b"" if the worker exited without one); closes it.

    Read on the event loop, not in a thread: the default executor's few threads would be held
    by workers that take long to start, delaying the others' readiness."""
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    finally:
        transport.close()


def run_workers(config: NodeConfig, *, log_level: str) -> int:
    """``cairn server --workers N`` (N > 1): the parent's whole life; returns its exit code."""
    return asyncio.run(WorkerSet(config, log_level=log_level).run())


def _die_with_parent(parent_pid: int) -> None:
    """Get SIGTERM if the parent dies (even by kill -9): no worker outlives its supervisor."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:  # it died before the line above took effect
        raise SystemExit("cairn: worker: the parent process is gone")


def _worker_main() -> None:
    parser = argparse.ArgumentParser(prog="python -m runtime.workers")
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    _die_with_parent(args.parent_pid)
    config = decode_config(sys.stdin.buffer.read())
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s [{config.node_name}] %(name)s: %(message)s",
    )
    # Imported here: the CLI imports this module (a cycle at import time otherwise).
    from runtime.cli_server import serve_node

    ready = os.fdopen(args.ready_fd, "wb", buffering=0)

    def on_ready() -> None:
        ready.write(READY_LINE)

    try:
        serve_node(config, on_ready=on_ready)
    finally:
        ready.close()


if __name__ == "__main__":
    _worker_main()
