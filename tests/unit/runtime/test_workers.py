"""The config a worker of ``cairn server --workers N`` runs with, and its trip to the worker."""

from __future__ import annotations

from pathlib import Path

from runtime.node import NodeConfig
from runtime.workers import decode_config, encode_config, worker_config


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
