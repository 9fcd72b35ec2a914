"""A throwaway S3-compatible server for tests: moto's server mode (``moto[server]``, dev extra).

Started per test session on 127.0.0.1; every test uses a fresh bucket (``S3Server.bucket``).
Clients find it through the usual variables (``s3_env``): dummy credentials and
``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from sdk.ports import free_port

_READY_TIMEOUT_S = 30.0


@dataclass
class S3Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point an S3 client here."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    @classmethod
    def start(cls, log_dir: Path) -> S3Server:
        port = free_port()
        log_path = log_dir / "moto.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = cls(process, port, log_path)
        try:
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def bucket(self) -> str:
        """Create a fresh bucket and return its name."""
        name = f"cairn-{uuid.uuid4().hex[:12]}"
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        return name

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # it answers: ready
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto server not ready on port {self.port}; see {self.log_path}")
