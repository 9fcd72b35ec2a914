"""Metadata that stays small (issue 7 item 6): every metadata record carries a key whose last
record is the whole current value of its fact, so the history a compacted topic keeps (the last
record of each key, in log order) yields the same registry as the whole history.

The histories are random (seeded, printed on failure) and go through a real LocalLog and the
real Registry; compaction is simulated exactly as Kafka does it: keep the highest offset of
each key, in offset order.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from partition_processor.commands import HandlerKind, ServiceType
from runtime.log import LocalLog
from runtime.metadata import (
    AppliedPositions,
    Deployment,
    DeploymentRegistered,
    HandlerInfo,
    MetadataRecord,
    NodeJoined,
    NodeLeft,
    Registry,
    ServiceInfo,
    Subscription,
    SubscriptionAdded,
    SubscriptionRemoved,
    encode_metadata,
    metadata_key,
)
from runtime.metadata_compaction import MIN_RECORDS, compact_local_metadata, recover
from runtime.supervisor import Supervisor

NODES = ["a/1", "b/2", "c/3"]


def _deployment(rng: random.Random, index: int) -> Deployment:
    names = rng.sample(["Greeter", "Counter", "Cart", "Mailer"], rng.randint(1, 3))
    kind: HandlerKind = "exclusive"
    service_type: ServiceType = "virtual_object"
    services = [
        ServiceInfo(name, service_type, {"run": HandlerInfo("run", kind)}, f"dp_{index}")
        for name in names
    ]
    uri = f"http://127.0.0.1:{9000 + index}"
    return Deployment(f"dp_{index}", uri, services, rng.randrange(99))


def _history(rng: random.Random, length: int) -> list[MetadataRecord]:
    records: list[MetadataRecord] = []
    for _ in range(length):
        node = rng.choice(NODES)
        match rng.randrange(8):
            case 0 | 1:
                records.append(DeploymentRegistered(_deployment(rng, rng.randrange(3))))
            case 2:
                port = rng.randrange(100)
                records.append(NodeJoined(node, f"http://{node}:{port}", f"http://{node}:1{port}"))
            case 3:
                # What Registry.leave appends: the node and its positions, each under its key.
                records += [NodeLeft(node), AppliedPositions(node, [], rng.randrange(99))]
            case 4:
                positions = [rng.randrange(1000) for _ in range(4)]
                records.append(AppliedPositions(node, positions, rng.randrange(99)))
            case 5:
                # Another node's removal of an expired node can interleave with its rejoin.
                removals: list[MetadataRecord] = [NodeLeft(node), AppliedPositions(node, [], 0)]
                records.append(rng.choice(removals))
            case 6:
                sub = Subscription(f"sub_{rng.randrange(3)}", "kafka://c/t", "service://S/h")
                records.append(SubscriptionAdded(sub))
            case _:
                records.append(SubscriptionRemoved(f"sub_{rng.randrange(3)}"))
    return records


def _compacted(records: list[MetadataRecord]) -> list[MetadataRecord]:
    """What log compaction leaves: the last record of each key, in log order."""
    last = {metadata_key(r): offset for offset, r in enumerate(records)}
    return [records[offset] for offset in sorted(last.values())]


async def _registry_state(directory: Path, records: list[MetadataRecord]) -> dict[str, Any]:
    log = LocalLog(directory, 1)
    await log.start()
    supervisor = Supervisor()
    registry = Registry(log)
    try:
        if records:
            keys = [metadata_key(r) for r in records]
            await log.append(0, [encode_metadata(r) for r in records], keys)
        await registry.start(supervisor)
        return {
            "deployments": registry.deployments(),
            "services": registry.services(),
            "subscriptions": registry.subscriptions(),
            "nodes": {n: registry.node_internal_url(n) for n in registry.nodes()},
            "left": [n for n in NODES if registry.has_left(n)],
            "positions": registry.applied_positions(),
            "lowest": [registry.lowest_applied(p, 0) for p in range(4)],
        }
    finally:
        await registry.stop()
        await supervisor.shutdown()
        await log.close()


@pytest.mark.parametrize("seed", range(16))
async def test_a_compacted_history_gives_the_same_registry(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    records = _history(rng, 30)
    compacted = _compacted(records)
    assert len(compacted) < len(records)
    full = await _registry_state(tmp_path / "full", records)
    kept = await _registry_state(tmp_path / "compacted", compacted)
    assert kept == full, f"seed {seed}"


async def test_a_removal_racing_a_rejoin_compacts_the_same(tmp_path: Path) -> None:
    """Node b expires a/1 (two records) while a/1, paused past the expiry, rejoins between
    them: each record changes only its own key's fact, so the compacted history agrees."""
    records: list[MetadataRecord] = [
        NodeJoined("a/1", "http://a", "http://a:1"),
        AppliedPositions("a/1", [1, 2, 3, 4], 10),
        NodeLeft("a/1"),  # b's removal...
        NodeJoined("a/1", "http://a", "http://a:1"),  # ...a/1 rejoins in between...
        AppliedPositions("a/1", [], 20),  # ...the rest of b's removal
        AppliedPositions("a/1", [5, 6, 7, 8], 30),  # a/1's next heartbeat
    ]
    full = await _registry_state(tmp_path / "full", records)
    assert full["nodes"] == {"a/1": "http://a:1"} and full["positions"] == {"a/1": [5, 6, 7, 8]}
    assert await _registry_state(tmp_path / "compacted", _compacted(records)) == full


async def test_a_service_a_deployment_dropped_falls_back_to_an_older_one(tmp_path: Path) -> None:
    """The services a registry serves depend only on the current deployments (found by seed
    6 above): B took Cart from A, then B was re-registered without Cart: A serves it again,
    as in the compacted history, where B's first registration is gone."""

    def deployment(index: int, names: list[str]) -> DeploymentRegistered:
        services = [
            ServiceInfo(n, "virtual_object", {"run": HandlerInfo("run", "exclusive")})
            for n in names
        ]
        return DeploymentRegistered(Deployment(f"dp_{index}", f"http://x/{index}", services))

    records: list[MetadataRecord] = [
        deployment(0, ["Cart"]),
        deployment(1, ["Cart", "Mailer"]),
        deployment(1, ["Mailer"]),
    ]
    full = await _registry_state(tmp_path / "full", records)
    assert [(s.name, s.deployment_id) for s in full["services"]] == [
        ("Cart", "dp_0"),
        ("Mailer", "dp_1"),
    ]
    assert await _registry_state(tmp_path / "compacted", _compacted(records)) == full


def test_every_record_is_keyed_by_its_fact() -> None:
    deployment = _deployment(random.Random(1), 2)
    sub = Subscription("sub_1", "kafka://c/t", "service://S/h")
    assert metadata_key(DeploymentRegistered(deployment)) == b"deployment/dp_2"
    assert metadata_key(NodeJoined("a/1", "http://x")) == b"node/a/1"
    assert metadata_key(NodeLeft("a/1")) == b"node/a/1"
    assert metadata_key(AppliedPositions("a/1", [1], 0)) == b"positions/a/1"
    assert metadata_key(SubscriptionAdded(sub)) == b"subscription/sub_1"
    assert metadata_key(SubscriptionRemoved("sub_1")) == b"subscription/sub_1"


async def test_a_node_that_leaves_or_expires_is_removed(tmp_path: Path) -> None:
    """Leaving drops the node and its positions (no delivery to it, no hold on trimming);
    a node silent past the expiry is listed as expired, one that speaks again is not."""
    log = LocalLog(tmp_path, 1)
    await log.start()
    supervisor = Supervisor()
    registry = Registry(log)
    try:
        await registry.start(supervisor)
        await registry.join("a/1", "http://a", "http://a:1")
        await registry.join("b/2", "http://b", "http://b:1")
        await registry.publish_positions("a/1", [5, 7])
        lsn = await log.tail(0) - 1
        await registry.publish_positions("b/2", [3, 9])
        await registry.wait_applied(lsn + 1)
        assert registry.lowest_applied(0, 0) == 3
        now = time.monotonic()
        assert registry.expired(now, 60) == []
        assert registry.expired(now + 61, 60) == ["a/1", "b/2"]
        await registry.leave("b/2")
        await registry.wait_applied(await log.tail(0) - 1)
        assert registry.nodes() == ["a/1"]
        assert registry.node_internal_url("b/2") is None and registry.has_left("b/2")
        assert registry.lowest_applied(0, 0) == 5
        assert registry.applied_positions() == {"a/1": [5, 7]}
        assert registry.expired(now + 61, 60) == ["a/1"]
        # e.g. paused past the expiry, then back
        await registry.join("b/2", "http://b2", "http://b2:1")
        assert not registry.has_left("b/2") and registry.node_internal_url("b/2") == "http://b2:1"
    finally:
        await registry.stop()
        await supervisor.shutdown()
        await log.close()


# --- the embedded log compacts its metadata at start --------------------------------------------


async def _write(directory: Path, records: list[MetadataRecord]) -> None:
    log = LocalLog(directory, 1)
    await log.start()
    try:
        await log.append(0, [encode_metadata(r) for r in records])
    finally:
        await log.close()


async def _tail(directory: Path) -> int:
    log = LocalLog(directory, 1)
    await log.start()
    try:
        return await log.tail(0)
    finally:
        await log.close()


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def _state_of(directory: Path) -> dict[str, Any]:
    return await _registry_state(directory, [])


async def test_the_local_metadata_log_is_compacted_at_start(tmp_path: Path) -> None:
    """A long history of few facts is rewritten to one record per fact, same registry; a short
    one is left alone."""
    rng = random.Random(7)
    records: list[MetadataRecord] = []
    for _ in range(MIN_RECORDS):
        sub = Subscription(f"sub_{rng.randrange(4)}", "kafka://c/t", "service://S/h")
        changes: list[MetadataRecord] = [SubscriptionAdded(sub), SubscriptionRemoved(sub.id)]
        records.append(rng.choice(changes))
        records.append(DeploymentRegistered(_deployment(rng, rng.randrange(3))))
    directory = tmp_path / "metadata"
    await _write(directory, records)
    before = await _state_of(directory)
    assert await compact_local_metadata(directory)
    assert await _tail(directory) == len(_compacted(records)) <= 7
    assert await _state_of(directory) == before
    assert _names(tmp_path) == ["metadata"]
    assert not await compact_local_metadata(directory)  # nothing left to save

    short = tmp_path / "short"
    await _write(short, records[:100])
    assert not await compact_local_metadata(short)
    assert await _tail(short) == 100


async def test_an_interrupted_compaction_is_finished_or_undone(tmp_path: Path) -> None:
    records: list[MetadataRecord] = [
        SubscriptionAdded(Subscription("sub_1", "kafka://c/t", "service://S/h")),
        SubscriptionRemoved("sub_1"),
        SubscriptionAdded(Subscription("sub_2", "kafka://c/t", "service://S/h")),
    ]
    directory = tmp_path / "metadata"
    staging = tmp_path / "metadata.compacting"
    old = tmp_path / "metadata.old"
    # Crashed while writing the copy: the copy is dropped, the original kept.
    await _write(directory, records)
    await _write(staging, records[-1:])
    assert recover(directory)
    assert _names(tmp_path) == ["metadata"] and await _tail(directory) == 3
    # Crashed between the renames: the complete copy goes into place.
    await _write(staging, _compacted(records))
    os.rename(directory, old)
    assert recover(directory)
    assert _names(tmp_path) == ["metadata"] and await _tail(directory) == 2
    assert [s.id for s in (await _state_of(directory))["subscriptions"]] == ["sub_2"]
