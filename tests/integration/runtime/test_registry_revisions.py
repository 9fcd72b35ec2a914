"""Registrations on a real (local) metadata log: revisions, idempotence, conflicts and force,
and a registry rebuilt from the log agreeing with the one that wrote it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.log import LocalLog
from runtime.metadata import Deployment, DeploymentConflict, HandlerInfo, Registry, ServiceInfo
from runtime.metadata import deployment_id_for as id_for
from runtime.supervisor import Supervisor


def _deployment(uri: str, **services: list[str]) -> Deployment:
    infos = [
        ServiceInfo(
            name,
            "service",
            {h: HandlerInfo(h, "none") for h in handlers},
            deployment_id=id_for(uri),
        )
        for name, handlers in services.items()
    ]
    return Deployment(id_for(uri), uri, infos)


async def _open(path: Path) -> tuple[LocalLog, Registry, Supervisor]:
    log = LocalLog(path, 1)
    await log.start()
    registry, supervisor = Registry(log), Supervisor()
    await registry.start(supervisor)
    return log, registry, supervisor


def _revisions(registry: Registry) -> dict[str, tuple[int, str]]:
    return {s.name: (s.revision, s.deployment_id) for s in registry.services()}


async def test_revisions_conflicts_and_force(tmp_path: Path) -> None:
    log, registry, supervisor = await _open(tmp_path / "metadata")
    a, b = "http://127.0.0.1:9001", "http://127.0.0.1:9002"
    try:
        assert (await registry.register(_deployment(a, Echo=["h"], Holder=["h"])))[1]
        assert not (await registry.register(_deployment(a, Echo=["h"], Holder=["h"])))[1]
        assert _revisions(registry) == {"Echo": (1, id_for(a)), "Holder": (1, id_for(a))}
        # Another URI serving Echo (without Holder): Echo's next revision.
        await registry.register(_deployment(b, Echo=["h", "extra"]))
        assert _revisions(registry) == {"Echo": (2, id_for(b)), "Holder": (1, id_for(a))}
        # The same URI with other services: refused unless forced.
        with pytest.raises(DeploymentConflict, match='"force": true'):
            await registry.register(_deployment(a, Echo=["h"]))
        await registry.register(_deployment(a, Echo=["h"]), force=True)
        assert _revisions(registry) == {"Echo": (3, id_for(a))}  # Holder is gone with it
        # B forced back (unchanged): its services are its own again, at their next revision.
        created = await registry.register(_deployment(b, Echo=["h", "extra"]), force=True)
        assert created[1]
        assert _revisions(registry) == {"Echo": (4, id_for(b))}
        # A forced back with Holder again, which no registry entry names any more.
        await registry.register(_deployment(a, Echo=["h"], Holder=["h"]), force=True)
        assert _revisions(registry) == {"Echo": (5, id_for(a)), "Holder": (1, id_for(a))}
        # C takes Holder over, then drops it: Holder falls back to A, whose registration still
        # offers it (services derive from the current deployments only, which is what a
        # compacted metadata topic keeps); A, forced back, serves it at its next revision.
        c = "http://127.0.0.1:9003"
        await registry.register(_deployment(c, Holder=["h"]))
        assert _revisions(registry)["Holder"] == (2, id_for(c))
        await registry.register(_deployment(c, Other=["h"]), force=True)
        assert _revisions(registry)["Holder"] == (1, id_for(a))
        await registry.register(_deployment(a, Echo=["h"], Holder=["h"]), force=True)
        assert _revisions(registry)["Holder"] == (2, id_for(a))
        written = _revisions(registry)
    finally:
        await registry.stop()
        await supervisor.shutdown()
        await log.close()
    # A node starting on the same log derives the same revisions.
    log, registry, supervisor = await _open(tmp_path / "metadata")
    try:
        assert _revisions(registry) == written
    finally:
        await registry.stop()
        await supervisor.shutdown()
        await log.close()
