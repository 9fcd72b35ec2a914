"""The node-to-node and leader-timeout settings: flags and environment to ``NodeConfig``, and
the checks of the advertised address and the cluster secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime import cli
from runtime.config import NodeConfig
from runtime.internal import advertised_host, read_cluster_secret


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [n for n in os.environ if n.startswith("CAIRN_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def _config(*flags: str) -> NodeConfig:
    return cli._config(cli._parser().parse_args(["server", *flags]))


def test_cluster_network_flags_and_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef\n")
    config = _config(
        "--log",
        "kafka",
        "--cluster",
        "--internal-bind",
        "0.0.0.0:0",
        "--advertised-address",
        "node-a.internal",
        "--cluster-secret-file",
        str(secret),
        "--ingress-leader-timeout",
        "2.5",
    )
    assert (config.internal_bind, config.advertised_address) == ("0.0.0.0:0", "node-a.internal")
    assert (config.cluster_secret_file, config.ingress_leader_timeout_ms) == (str(secret), 2500)
    clean_env.setenv("CAIRN_INGRESS_LEADER_TIMEOUT", "20s")
    clean_env.setenv("CAIRN_INTERNAL_BIND", "127.0.0.1:6000")
    config = _config()
    assert (config.ingress_leader_timeout_ms, config.internal_bind) == (20_000, "127.0.0.1:6000")
    for bad in ("soon", "0"):
        with pytest.raises(SystemExit, match="--ingress-leader-timeout"):
            _config("--ingress-leader-timeout", bad)


def test_advertised_host() -> None:
    assert advertised_host("", "10.1.2.3") == "10.1.2.3"
    assert advertised_host("node-a", "0.0.0.0") == "node-a"
    for wildcard in ("0.0.0.0", "::", "[::]", "0:0::0"):
        with pytest.raises(ValueError, match="wildcard"):
            advertised_host(wildcard, "127.0.0.1")
        with pytest.raises(ValueError, match="set --advertised-address"):
            advertised_host("", wildcard)
    with pytest.raises(ValueError, match="not a host name"):
        advertised_host("http://node-a", "127.0.0.1")


def test_cluster_secret(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"  a-secret-of-24-bytes-ok\n")
    assert read_cluster_secret(str(path)) == b"a-secret-of-24-bytes-ok"
    with pytest.raises(ValueError, match="needs --cluster-secret-file"):
        read_cluster_secret("")
    with pytest.raises(ValueError, match="cannot read it"):
        read_cluster_secret(str(tmp_path / "missing"))
    path.write_text("short")
    with pytest.raises(ValueError, match="at least 16"):
        read_cluster_secret(str(path))
