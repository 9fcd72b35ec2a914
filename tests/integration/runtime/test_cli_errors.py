"""``cairn server`` refuses what it cannot run with one clear line and exit code 1, no traceback."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sdk.ports import free_port

ROOT = Path(__file__).resolve().parents[3]


def _server(data_dir: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "runtime.cli", "server", "--data-dir", str(data_dir), *flags]


def _binds() -> list[str]:
    return [
        "--ingress-bind",
        f"127.0.0.1:{free_port()}",
        "--admin-bind",
        f"127.0.0.1:{free_port()}",
    ]


def _fails_clearly(argv: list[str], expected: str) -> None:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("cairn: ") and expected in last, last


def test_bad_bind_address(tmp_path: Path) -> None:
    argv = _server(tmp_path, "--ingress-bind", "127.0.0.1:http", "--admin-bind", "127.0.0.1:0")
    _fails_clearly(argv, "--ingress-bind: expected HOST:PORT")


def test_unreachable_kafka(tmp_path: Path) -> None:
    argv = _server(tmp_path, *_binds(), "--log", "kafka", "--kafka-bootstrap", "127.0.0.1:1")
    _fails_clearly(argv, "Unable to bootstrap")


def test_port_in_use_and_data_dir_in_use(tmp_path: Path) -> None:
    binds = _binds()
    first = subprocess.Popen(
        _server(tmp_path / "a", *binds),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://{binds[1]}/restate/health", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the first node did not start"
                time.sleep(0.1)
        _fails_clearly(
            _server(tmp_path / "b", binds[0], binds[1], *binds[2:]), "address already in use"
        )
        _fails_clearly(_server(tmp_path / "a", *_binds()), "already open by another")
    finally:
        first.terminate()
        first.wait(30)


def test_endpoint_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "sdk", "examples.demo:app", "--port", str(port)]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("cairn endpoint: cannot bind")


def test_a_cluster_needs_kafka(tmp_path: Path) -> None:
    _fails_clearly(_server(tmp_path, *_binds(), "--cluster"), "--cluster needs --log kafka")


def test_bad_replication(tmp_path: Path) -> None:
    _fails_clearly(_server(tmp_path, *_binds(), "--replication", "0"), "--replication")


def test_bad_standby_apply_interval(tmp_path: Path) -> None:
    _fails_clearly(
        _server(tmp_path, *_binds(), "--standby-apply-interval-ms", "-1"),
        "--standby-apply-interval-ms must not be negative",
    )


def test_bad_shutdown_timeout(tmp_path: Path) -> None:
    _fails_clearly(_server(tmp_path, *_binds(), "--shutdown-timeout", "soon"), "--shutdown-timeout")
    _fails_clearly(_server(tmp_path, *_binds(), "--shutdown-timeout", "0"), "more than 0")


def test_bad_snapshot_flags(tmp_path: Path) -> None:
    _fails_clearly(
        _server(tmp_path, *_binds(), "--snapshot-repository", "http://bucket/x"),
        "--snapshot-repository: unsupported snapshot repository",
    )
    _fails_clearly(
        _server(tmp_path, *_binds(), "--snapshot-repository", "file://relative/dir"),
        "--snapshot-repository: expected file:///absolute/dir",
    )
    _fails_clearly(
        _server(tmp_path, *_binds(), "--snapshot-interval-records", "-1"),
        "--snapshot-interval-records must be 0 or more",
    )


def test_snapshot_commands_without_a_node_say_so() -> None:
    argv = [sys.executable, "-m", "runtime.cli", "snapshots", "list", "--admin"]
    _fails_clearly([*argv, f"http://127.0.0.1:{free_port()}"], "cannot reach the admin API")


def test_a_cluster_property_for_an_unknown_cluster(tmp_path: Path) -> None:
    flags = [*_binds(), "--kafka-cluster", "events=127.0.0.1:9092"]
    _fails_clearly(
        _server(tmp_path, *flags, "--kafka-cluster-property", "evnets:client_id=x"),
        "--kafka-cluster-property for unknown cluster(s) ['evnets']",
    )
    # the same through the environment: CAIRN_KAFKA_CLUSTER_PROPERTIES
    properties = "events:client_id=x;other:client_id=y"
    done = subprocess.run(
        _server(tmp_path, *flags),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CAIRN_KAFKA_CLUSTER_PROPERTIES": properties},
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        "cairn: --kafka-cluster-property for unknown cluster(s) ['other']"
    ]


def test_bad_node_to_node_settings(tmp_path: Path) -> None:
    """A cluster node needs the cluster secret and an address its peers can reach."""
    secret = tmp_path / "secret"
    secret.write_text("s" * 32)
    cluster = [*_binds(), "--log", "kafka", "--kafka-bootstrap", "127.0.0.1:1", "--cluster"]
    _fails_clearly(_server(tmp_path, *cluster), "a cluster needs --cluster-secret-file")
    short = tmp_path / "short"
    short.write_text("abc\n")
    _fails_clearly(
        _server(tmp_path, *cluster, "--cluster-secret-file", str(short)), "at least 16 are needed"
    )
    with_secret = [*cluster, "--cluster-secret-file", str(secret)]
    _fails_clearly(
        _server(tmp_path, *with_secret, "--advertised-address", "0.0.0.0"),
        "--advertised-address '0.0.0.0' is a wildcard",
    )
    _fails_clearly(
        _server(tmp_path, *with_secret, "--internal-bind", "0.0.0.0:0"),
        "set --advertised-address",
    )


def test_bad_kafka_settings_flags(tmp_path: Path) -> None:
    _fails_clearly(
        _server(tmp_path, *_binds(), "--kafka-replication-factor", "0"),
        "--kafka-replication-factor must be at least 1",
    )
    flags = ["--applied-positions-interval-ms", "1000", "--cluster-node-expiry-ms", "2000"]
    _fails_clearly(
        _server(tmp_path, *_binds(), *flags),
        "cluster_node_expiry_ms must exceed twice applied_positions_interval_ms",
    )


async def test_an_existing_log_topic_with_another_partition_count(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """The log topic exists with 2 partitions; ``--partitions 3`` stops the start, saying so."""
    prefix = f"clicount{time.time_ns()}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}.log", 2, 1)])
    finally:
        await admin.close()
    kafka = ["--log", "kafka", "--kafka-bootstrap", kafka_bootstrap, "--kafka-topic-prefix", prefix]
    await asyncio.to_thread(
        _fails_clearly,
        _server(tmp_path, *_binds(), *kafka, "--partitions", "3"),
        f"topic {prefix}.log has 2 partitions, not 3 (--partitions must match",
    )


def test_unusable_security_files(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    (tmp_path / "empty").write_text("")
    (tmp_path / "not-a-key.pem").write_text("hello")
    for flags, expected in (
        (("--admin-token-file", missing), "cannot read the token file"),
        (("--ingress-token-file", str(tmp_path / "empty")), "holds no token"),
        (("--request-signing-key-file", str(tmp_path / "not-a-key.pem")), "not an unencrypted"),
        (("--tls-cert-file", missing, "--tls-key-file", missing), "cannot use --tls-cert-file"),
        (("--tls-cert-file", missing), "--tls-cert-file and --tls-key-file go together"),
        (("--deployment-ca-file", missing), "cannot read the CA bundle"),
    ):
        _fails_clearly(_server(tmp_path / "data", *_binds(), *flags), expected)
