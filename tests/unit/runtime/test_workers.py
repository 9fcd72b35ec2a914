"""The config a worker of ``cairn server --workers N`` runs with, and its trip to the worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from runtime.config import NodeConfig
from runtime.workers import (
    WorkerSet,
    decode_config,
    encode_config,
    prepare_workers,
    worker_config,
)
from sdk.ports import free_port


def test_each_worker_is_a_cluster_node_with_its_own_name_and_data_dir() -> None:
    config = NodeConfig(data_dir=Path("/data"), log="kafka", node_name="web1", workers=3)
    second = worker_config(config, 2)
    assert (second.node_name, second.data_dir, second.cluster) == (
        "web1-2",
        Path("/data/worker-2"),
        True,
    )
    assert second.workers == 3  # a worker knows it shares its ports
    assert (second.ingress_bind, second.admin_bind) == (config.ingress_bind, config.admin_bind)
    assert second.internal_bind == "127.0.0.1:0"  # its own free node-to-node port


def _config(data_dir: Path) -> NodeConfig:
    """Two workers on free ports."""
    return NodeConfig(
        data_dir=data_dir,
        log="kafka",
        workers=2,
        ingress_bind=f"127.0.0.1:{free_port()}",
        admin_bind=f"127.0.0.1:{free_port()}",
    )


def test_workers_without_a_secret_file_share_one_made_once(tmp_path: Path) -> None:
    config = _config(tmp_path)
    prepared = prepare_workers(config)
    secret = Path(prepared.cluster_secret_file)
    made = secret.read_text()
    assert secret == tmp_path / "cluster-secret"
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text().strip()) == 64
    assert worker_config(prepared, 2).cluster_secret_file == str(secret)
    again = prepare_workers(config)  # a restart keeps it
    assert again.cluster_secret_file == str(secret) and secret.read_text() == made


def test_a_given_secret_file_is_checked_and_used(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("too short")
    config = _config(tmp_path)
    with pytest.raises(ValueError, match="at least 16 are needed"):
        prepare_workers(msgspec.structs.replace(config, cluster_secret_file=str(short)))
    given = tmp_path / "given"
    given.write_text("s" * 32)
    prepared = prepare_workers(msgspec.structs.replace(config, cluster_secret_file=str(given)))
    assert prepared.cluster_secret_file == str(given)
    assert not (tmp_path / "cluster-secret").exists()


def test_a_config_reaches_the_worker_unchanged() -> None:
    config = NodeConfig(
        data_dir=Path("/data/worker-1"),
        log="kafka",
        workers=2,
        kafka_clusters={"events": "k1:9092"},
        kafka_cluster_properties={"events": {"security_protocol": "SSL"}},
        shutdown_timeout_ms=2500,
    )
    assert decode_config(encode_config(config)) == config


async def test_stopping_when_every_worker_has_already_exited(tmp_path: Path) -> None:
    """All workers gone (say, each failed at start): stopping reports their exit codes instead
    of raising (asyncio.wait refuses an empty set; the parent ended with a traceback)."""
    workers = WorkerSet(_config(tmp_path))
    codes = []
    for worker, command in zip(workers._workers, ("true", "false"), strict=True):
        worker.process = await asyncio.create_subprocess_exec(command)
        codes.append(await worker.process.wait())
    assert codes == [0, 1]
    assert await workers._stop_all() is False  # one exited with 1: not a clean stop
    workers._workers[1].process = workers._workers[0].process
    assert await workers._stop_all() is True
