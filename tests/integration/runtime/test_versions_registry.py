"""Deployment removal on a real (local) metadata log, and where an attempt runs: the pinned
deployment, the newest one for an unpinned invocation, 573 once the pinned one is removed."""

from __future__ import annotations

from pathlib import Path

from partition_processor import codes
from partition_processor.commands import Failed, Target
from runtime.invoker.attempt import pinned_deployment
from runtime.metadata import DeploymentRemoved, metadata_key
from runtime.metadata import deployment_id_for as id_for
from tests.integration.runtime.test_registry_revisions import _deployment, _open

V1, V2 = "http://127.0.0.1:9101", "http://127.0.0.1:9102"
ECHO = Target("Echo", "h")


async def test_attempts_run_on_the_pinned_deployment_until_it_is_removed(tmp_path: Path) -> None:
    log, registry, supervisor = await _open(tmp_path / "metadata")
    try:
        await registry.register(_deployment(V1, Echo=["h"]))
        await registry.register(_deployment(V2, Echo=["h"]))
        newest = pinned_deployment(registry, None, ECHO)
        assert not isinstance(newest, Failed) and newest[0].id == id_for(V2)
        pinned = pinned_deployment(registry, id_for(V1), ECHO)
        assert not isinstance(pinned, Failed) and pinned[0].id == id_for(V1)
        assert pinned[1] is not None and pinned[1].name == "h"
        await registry.remove(id_for(V1))
        assert registry.deployment(id_for(V1)) is None
        gone = pinned_deployment(registry, id_for(V1), ECHO)
        assert isinstance(gone, Failed) and gone.code == codes.DEPLOYMENT_GONE
        assert not gone.retryable
        # Removing the newest falls the service back to the other one still offering it.
        await registry.register(_deployment(V1, Echo=["h"]))
        await registry.remove(id_for(V1))
        service = registry.service("Echo")
        assert service is not None and service.deployment_id == id_for(V2)
        await registry.remove(id_for(V2))
        none = pinned_deployment(registry, None, ECHO)
        assert isinstance(none, Failed) and none.code == codes.UNAVAILABLE and none.retryable
    finally:
        await registry.stop()
        await supervisor.shutdown()
        await log.close()
    # A registry rebuilt from the log agrees (the removal is a record under the deployment's key).
    assert metadata_key(DeploymentRemoved(id_for(V1))) == f"deployment/{id_for(V1)}".encode()
    log, registry, supervisor = await _open(tmp_path / "metadata")
    try:
        assert registry.deployments() == [] and registry.service("Echo") is None
    finally:
        await registry.stop()
        await supervisor.shutdown()
        await log.close()
