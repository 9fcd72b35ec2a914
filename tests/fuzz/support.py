"""Shared pieces of the fuzzers: settings, raw HTTP, and the every-partition liveness check."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
import uuid
from typing import Any

from hypothesis import HealthCheck, settings

from partition_processor.ids import object_partition_key, partition_of

PARTITIONS = 24
# Small by default (CI budget); CAIRN_FUZZ_EXAMPLES=2000 for a long run.
EXAMPLES = int(os.environ.get("CAIRN_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same examples every run: a failure reproduces
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def raw_http(port: int, request: bytes, timeout_s: float = 60.0) -> tuple[int, bytes]:
    """Send ``request`` as is (any bytes) and return (status, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def build_request(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def assert_clear_answer(status: int, body: bytes, context: object) -> None:
    """Bad input gets a 4xx (never a 5xx but 503) and, from our handlers, a JSON error body."""
    assert status < 500 or status == 503, (status, body[:300], context)
    if status >= 400 and body.startswith(b"{"):
        error = json.loads(body)
        assert isinstance(error.get("message"), str), (body[:300], context)


def http_json(method: str, url: str, body: Any = None, timeout_s: float = 60.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def every_partition_serves(ingress: str, rounds: int = 2) -> None:
    """A real invocation completes on every partition, and the counts are exact."""
    found: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    while any(not keys for keys in found.values()):
        key = uuid.uuid4().hex[:12]
        found[partition_of(object_partition_key("Counter", key), PARTITIONS)].append(key)
    keys = [keys[0] for keys in found.values()]
    for _ in range(rounds):
        for key in keys:
            status, _ = http_json("POST", f"{ingress}/Counter/{key}/add", 1)
            assert status == 200, key
    for key in keys:
        assert http_json("POST", f"{ingress}/Counter/{key}/get") == (200, rounds), key
