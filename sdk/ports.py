"""A free TCP port for a server that a test or a benchmark is about to start.

Asking the kernel for port 0 and closing the socket hands out a port from the ephemeral range,
the same range every outgoing connection takes its local port from: between the probe and the
server's bind, a Kafka client or an HTTP client of any process on the machine can take it, and
the server then fails with "address already in use". The ports handed out here lie below that
range, where no outgoing connection lands, and each process walks them in turn from a random
start, so that two test processes rarely meet on one; a port something already listens on is
skipped.
"""

from __future__ import annotations

import itertools
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Below this, ports are often those of well-known services; and a range of fewer ports than
# this is too small to walk.
_LOWEST = 10_000
_MIN_SPAN = 1_000

_lock = threading.Lock()
_walk: Iterator[int] | None = None


def _ephemeral_start() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default, and not far from other systems'


def _ports() -> Iterator[int]:
    high = _ephemeral_start()
    if high - _LOWEST < _MIN_SPAN:
        return iter(())  # nothing to walk below the ephemeral range: let the kernel choose
    start = random.randrange(_LOWEST, high)
    return itertools.islice(itertools.cycle(range(_LOWEST, high)), start - _LOWEST, None)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` nothing listens on, outside the kernel's ephemeral range when it can."""
    global _walk
    with _lock:
        if _walk is None:
            _walk = _ports()
        for port, _ in zip(_walk, range(_MIN_SPAN), strict=False):
            if _bindable(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        chosen: int = probe.getsockname()[1]
        return chosen
