"""sdk.ports: ports for test servers lie below the ephemeral range and are not handed out twice."""

from __future__ import annotations

import socket

import pytest

from sdk import ports


def test_ports_lie_below_the_ephemeral_range_and_differ() -> None:
    chosen = [ports.free_port() for _ in range(50)]
    assert len(set(chosen)) == len(chosen)
    assert all(ports._LOWEST <= port < ports._ephemeral_start() for port in chosen)
    for port in chosen:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_a_port_something_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        other = ports.free_port()
        monkeypatch.setattr(ports, "_walk", iter([taken, taken, other]))
        assert ports.free_port() == other


def test_a_taken_port_fails_the_probe() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        assert not ports._bindable("127.0.0.1", held.getsockname()[1])


def test_without_room_below_the_range_the_kernel_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_ephemeral_start", lambda: ports._LOWEST + 10)
    assert list(ports._ports()) == []
    monkeypatch.setattr(ports, "_walk", None)
    port = ports.free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
