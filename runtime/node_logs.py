"""The node's two logs (partitions and metadata), on the local disk or on Kafka topics."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from runtime.config import NodeConfig
from runtime.log import KafkaLog, LocalLog, Log
from runtime.log.kafka import BrokerSupport
from runtime.supervisor import Supervisor


def local_metadata_dir(config: NodeConfig) -> Path:
    return config.data_dir / "log" / "metadata"


def open_logs(config: NodeConfig, supervisor: Supervisor) -> tuple[Log, Log]:
    if config.log == "local":
        root = config.data_dir / "log"
        partitions = LocalLog(
            root / "partitions",
            config.partitions,
            segment_bytes=config.local_log_segment_bytes,
            supervisor=supervisor,
        )
        # One fsync process for both: the metadata log is rarely written.
        metadata = LocalLog(
            local_metadata_dir(config), 1, supervisor=supervisor, share_fsync_with=partitions
        )
        return partitions, metadata
    if config.log == "kafka":
        prefix = config.kafka_topic_prefix
        wait = timedelta(milliseconds=config.kafka_fetch_max_wait_ms)
        record_bytes = config.size_policy().record_bytes
        support = BrokerSupport()  # idempotence is detected once, by the first to start
        replication = config.kafka_replication_factor
        return (
            KafkaLog(
                config.kafka_bootstrap,
                f"{prefix}.log",
                config.partitions,
                fetch_max_wait=wait,
                max_record_bytes=record_bytes,
                replication_factor=replication,
                support=support,
            ),
            KafkaLog(
                config.kafka_bootstrap,
                f"{prefix}.metadata",
                1,
                fetch_max_wait=wait,
                replication_factor=replication,
                compacted=True,
                support=support,
            ),
        )
    raise ValueError(f"unknown log {config.log!r}: expected 'local' or 'kafka'")
