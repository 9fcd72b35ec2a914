"""What a ``PartitionWorker`` runs with, outside a node: a registry on its own metadata log, a
supervisor, the invoker's channels and slots, built from ``NodeConfig``'s defaults, and closed
in order. For integration tests that drive one worker over a real log and store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from partition_processor.store_rocksdb import RocksDBStore
from runtime.config import NodeConfig
from runtime.invoker.attempt import StreamTimeouts
from runtime.invoker.channels import ChannelPool
from runtime.invoker.slots import RunningSlots
from runtime.log import LocalLog, Log
from runtime.metadata import Registry
from runtime.supervisor import Supervisor
from runtime.worker.partition import PartitionWorker


@dataclass
class WorkerParts:
    metadata: LocalLog
    registry: Registry
    supervisor: Supervisor
    config: NodeConfig
    channels: ChannelPool
    slots: RunningSlots
    store: RocksDBStore
    # Closed after the supervisor's shutdown and before the store (say, a Snapshotter).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def worker(self, partition: int, log: Log, node_id: str, **options: Any) -> PartitionWorker:
        """A worker of ``partition`` on these parts; ``options`` as ``PartitionWorker`` takes."""
        return PartitionWorker(
            partition,
            log_=log,
            store=self.store,
            node_id=node_id,
            registry=self.registry,
            channels=self.channels,
            respond=lambda action: None,
            limits=self.config.size_policy(),
            supervisor=self.supervisor,
            slots=self.slots,
            timeouts=StreamTimeouts(
                self.config.inactivity_timeout_ms, self.config.abort_timeout_ms
            ),
            **options,
        )


@asynccontextmanager
async def worker_parts(tmp_path: Path, store: RocksDBStore) -> AsyncIterator[WorkerParts]:
    """The parts, with ``store`` (closed on the way out, with everything else)."""
    metadata = LocalLog(tmp_path / "metadata", 1)
    await metadata.start()
    registry = Registry(metadata)
    supervisor = Supervisor()
    await registry.start(supervisor)
    config = NodeConfig(data_dir=tmp_path)
    channels = ChannelPool(
        config.size_policy().message_bytes,
        keepalive_time_ms=config.grpc_keepalive_time_ms,
        keepalive_timeout_ms=config.grpc_keepalive_timeout_ms,
    )
    slots = RunningSlots(config.max_running_invocations, idle_suspend_s=1.0)
    parts = WorkerParts(metadata, registry, supervisor, config, channels, slots, store)
    try:
        yield parts
    finally:
        await supervisor.shutdown()
        for close in parts.closers:
            await close()
        await slots.close()
        await channels.close()
        store.close()
        await registry.stop()
        await metadata.close()
