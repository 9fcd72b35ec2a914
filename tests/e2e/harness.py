"""End-to-end harness: a real Cairn node and a real SDK endpoint, each in its own process.

Tests talk to them only over HTTP (ingress, admin) and kill them with SIGKILL, as a user would.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from sdk.ports import free_port
from tests.support.broker import unique_topic

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # tests/compat holds `restate`, the alias package for apps written for restate-sdk
    paths = [str(ROOT), str(ROOT / "tests" / "compat"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Process:
    """A child process whose output goes to a log file (printed when a test fails)."""

    argv: list[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=_env)
    process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child until it exits
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=dict(self.env), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Endpoint:
    """``python -m sdk MODULE:app --port P``."""

    def __init__(
        self, app: str, log_dir: Path, port: int | None = None, args: Sequence[str] = ()
    ) -> None:
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "sdk", app, "--port", str(self.port), "--log-level", "info"]
        argv += args  # e.g. --no-message-batches
        self.process = Process(argv, log_dir / f"endpoint-{self.port}.log")

    def start(self) -> None:
        self.process.spawn()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise RuntimeError(f"endpoint exited:\n{self.process.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.process.kill()  # not left running behind the failed test
        raise RuntimeError(f"endpoint not ready:\n{self.process.output()}")

    async def restart(self) -> None:
        self.kill()
        await asyncio.to_thread(self.start)

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.terminate()


class Node:
    """``cairn server`` on a data dir, with the local log or a fresh Kafka topic prefix."""

    def __init__(
        self,
        log: str,
        data_dir: Path,
        kafka_bootstrap: str | None = None,
        partitions: int = 4,
        extra: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        topic_prefix: str | None = None,
    ) -> None:
        self.ingress_port = free_port()
        self.admin_port = free_port()
        self.ingress = f"http://127.0.0.1:{self.ingress_port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        argv = [
            sys.executable,
            "-m",
            "runtime.cli",
            "server",
            "--data-dir",
            str(data_dir),
            "--ingress-bind",
            f"127.0.0.1:{self.ingress_port}",
            "--admin-bind",
            f"127.0.0.1:{self.admin_port}",
            "--partitions",
            str(partitions),
            "--log",
            log,
            "--log-level",
            "info",
        ]
        if log == "kafka":
            assert kafka_bootstrap is not None
            argv += [
                "--kafka-bootstrap",
                kafka_bootstrap,
                "--kafka-topic-prefix",
                topic_prefix or unique_topic("e2e"),
                "--kafka-fetch-max-wait-ms",
                "10",
            ]
        argv += extra or []
        data_dir.mkdir(parents=True, exist_ok=True)
        if "--cluster" in argv:
            argv += _cluster_defaults(argv, data_dir.parent)
        self.process = Process(argv, data_dir.parent / f"{data_dir.name}-node.log")
        if env:
            self.process.env = {**self.process.env, **env}

    def start(self) -> None:
        self.process.spawn()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise RuntimeError(f"node exited:\n{self.process.output()[-5000:]}")
            try:
                with urllib.request.urlopen(f"{self.ingress}/restate/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.process.kill()  # not left running behind the failed test
        raise RuntimeError(f"node not ready:\n{self.process.output()[-5000:]}")

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.terminate()

    async def restart(self) -> None:
        """kill -9, then start again on the same data dir (and the same log)."""
        self.kill()
        await asyncio.to_thread(self.start)


def cluster_secret_file(directory: Path) -> Path:
    """The secret shared by the cluster nodes whose data dirs are in ``directory``."""
    path = directory / "cluster-secret"
    if not path.exists():
        path.write_text(secrets.token_hex(24))
    return path


def _cluster_defaults(argv: list[str], directory: Path) -> list[str]:
    """A cluster node's internal port (any free one) and the cluster's secret, unless given."""
    flags: list[str] = []
    if "--internal-bind" not in argv:
        flags += ["--internal-bind", "127.0.0.1:0"]
    if "--cluster-secret-file" not in argv:
        flags += ["--cluster-secret-file", str(cluster_secret_file(directory))]
    return flags


@dataclass
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Client:
    """HTTP calls to a node's ingress and admin APIs."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=120),
            connector=aiohttp.TCPConnector(limit=200),
        )

    async def close(self) -> None:
        await self._http.close()

    async def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """A JSON ``body`` goes as application/json; ``raw`` bytes and no body go with the
        content-type of ``headers`` or none (as curl sends a request without ``-d``: Restate
        refuses a content-type on handlers without input)."""
        data: bytes | io.BytesIO
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        all_headers = dict(headers or {})
        skip: list[str] = []
        if raw is None and body is not None:
            all_headers.setdefault("content-type", "application/json")
        elif not any(k.lower() == "content-type" for k in all_headers):
            skip.append("Content-Type")
        if len(data) > 1024 * 1024:
            data = io.BytesIO(data)  # aiohttp warns about big raw bytes bodies
        async with self._http.request(
            method, url, data=data, headers=all_headers, skip_auto_headers=skip
        ) as response:
            # Case-insensitive, as HTTP header names are.
            headers = CIMultiDict(response.headers)
            return Response(response.status, await response.read(), headers)

    async def call(
        self,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
    ) -> Response:
        """A request to the ingress, e.g. ``call("/Greeter/greet", "Ada")``."""
        return await self.request(
            method, f"{self.node.ingress}{path}", body, raw=raw, headers=headers
        )

    async def send(
        self, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None
    ) -> str:
        """``POST {path}/send``: a one-way invocation; returns its id (asserts the 202)."""
        response = await self.call(f"{path}/send", body, headers=headers)
        assert response.status == 202, response.body
        invocation_id: str = response.json()["invocationId"]
        return invocation_id

    async def attach(self, invocation_id: str) -> Response:
        """Wait for an invocation's result."""
        return await self.call(f"/restate/invocation/{invocation_id}/attach", method="GET")

    async def admin(self, method: str, path: str, body: Any = None) -> Response:
        return await self.request(method, f"{self.node.admin}{path}", body)

    async def register(self, endpoint: Endpoint) -> None:
        response = await self.admin("POST", "/deployments", {"uri": endpoint.uri})
        assert response.status in (200, 201), response.body

    async def invocation(self, invocation_id: str) -> Any:
        """The admin status of an invocation; waits while it is not yet applied (404 right after
        a ``/send`` is normal: the 202 means appended to the log, the store follows)."""
        deadline = time.monotonic() + 10
        while True:
            response = await self.admin("GET", f"/invocations/{invocation_id}")
            if response.status != 404 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        assert response.status == 200, response.body
        return response.json()

    async def wait_for(self, check: Any, timeout_s: float = 30.0, interval_s: float = 0.05) -> Any:
        """Poll the async ``check()`` until it returns something truthy."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            last = await check()
            if last:
                return last
            await asyncio.sleep(interval_s)
        raise AssertionError(f"condition not met within {timeout_s}s (last: {last!r})")
