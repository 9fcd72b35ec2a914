"""The header deadline (runtime/http_limits.py): a connection is closed unless its first
request's line and headers arrive in time; empty lines before the request line do not count."""

from __future__ import annotations

import asyncio

from runtime.http_limits import HeaderDeadline


class _Inner(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def _fed(*chunks: bytes) -> tuple[_Transport, _Inner]:
    inner, transport = _Inner(), _Transport()
    protocol = HeaderDeadline(inner, timeout_s=0.2)
    protocol.connection_made(transport)
    for chunk in chunks:
        protocol.data_received(chunk)
    await asyncio.sleep(0.4)
    return transport, inner


async def test_complete_headers_stop_the_deadline() -> None:
    transport, inner = await _fed(b"GET / HTTP/1.1\r\nHost: x\r", b"\n\r\n")
    assert not transport.closed
    assert inner.received == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_only_empty_lines_do_not_stop_the_deadline() -> None:
    # The parser skips empty lines before a request line: they end no headers, so the
    # connection is still closed at the deadline (found by tests/fuzz/test_ingress_fuzz.py).
    transport, _ = await _fed(b"\r\n\r\r\n\r\n", b"\n\r\n")
    assert transport.closed


async def test_empty_lines_then_headers_stop_the_deadline() -> None:
    transport, _ = await _fed(b"\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not transport.closed


async def test_dribbled_headers_are_cut_off() -> None:
    transport, _ = await _fed(b"GET / HTTP/1.1\r\n", b"Host: x\r\n")
    assert transport.closed
