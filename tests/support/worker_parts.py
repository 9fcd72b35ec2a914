"""What a ``PartitionWorker`` runs with, outside a node: a registry on its own metadata log, a
supervisor, the invoker's channels and slots, built from ``NodeConfig``'s defaults, and closed
in order. For integration tests that drive one worker over a real log and store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
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
from tests.support.teardown import bounded


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
    """The parts, with ``store`` (closed on the way out, with everything else).

    Each close is registered as its part starts and runs last first, bounded, even if one run
    before it failed (tests/support/teardown.py).
    """
    async with AsyncExitStack() as teardown:
        teardown.callback(store.close)
        metadata = LocalLog(tmp_path / "metadata", 1)
        teardown.push_async_callback(bounded, "the metadata log's close", metadata.close)
        await metadata.start()
        registry = Registry(metadata)
        teardown.push_async_callback(bounded, "the registry's stop", registry.stop)
        config = NodeConfig(data_dir=tmp_path)
        channels = ChannelPool(
            config.size_policy().message_bytes,
            keepalive_time_ms=config.grpc_keepalive_time_ms,
            keepalive_timeout_ms=config.grpc_keepalive_timeout_ms,
        )
        teardown.push_async_callback(bounded, "the channel pool's close", channels.close)
        slots = RunningSlots(config.max_running_invocations, idle_suspend_s=1.0)
        teardown.push_async_callback(bounded, "the running slots' close", slots.close)
        supervisor = Supervisor()
        parts = WorkerParts(metadata, registry, supervisor, config, channels, slots, store)

        async def close_parts() -> None:
            for close in parts.closers:
                await bounded("a part's close", close)

        teardown.push_async_callback(close_parts)
        # First of all: the tasks, which use every part above.
        teardown.push_async_callback(bounded, "the supervisor's shutdown", supervisor.shutdown)
        await registry.start(supervisor)
        yield parts
