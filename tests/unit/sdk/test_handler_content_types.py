"""What a handler declares about its body and output, as restate-sdk declares it, and how the
node reads it back from the manifest."""

from __future__ import annotations

import pytest

import sdk as restate
from proto import endpoint_pb2 as pb
from runtime.invoker.discovery import DiscoveryError, deployment_from_manifest
from runtime.metadata import InputRules, OutputRules
from sdk._transport.server import manifest_of


def _app() -> restate.App:
    svc = restate.Service("S")

    @svc.handler()
    async def void(ctx: restate.Context) -> None:
        return None

    @svc.handler()
    async def unannotated(ctx: restate.Context):  # type: ignore[no-untyped-def]
        return 1

    @svc.handler()
    async def typed(ctx: restate.Context, n: int) -> int:
        return n

    @svc.handler(
        accept="*/*",
        content_type="application/octet-stream",
        input_serde=restate.serde.BytesSerde(),
        output_serde=restate.serde.BytesSerde(),
    )
    async def raw(ctx: restate.Context, data: bytes) -> bytes:
        return data

    return restate.app([svc])


def test_the_manifest_declares_input_and_output_like_restate_sdk() -> None:
    handlers = {h.name: h for h in manifest_of(_app()).services[0].handlers}
    assert handlers["void"].input == pb.InputPayload(required=False)
    assert not handlers["void"].output.HasField("content_type")
    assert not handlers["unannotated"].output.HasField("content_type")  # as restate-sdk: void
    assert handlers["typed"].input == pb.InputPayload(
        content_type="application/json", non_empty=True, json=True
    )
    assert handlers["typed"].output.content_type == "application/json"
    assert handlers["raw"].input == pb.InputPayload(content_type="*/*", non_empty=True)
    assert handlers["raw"].output.content_type == "application/octet-stream"


def test_the_node_keeps_what_the_manifest_declares() -> None:
    deployment = deployment_from_manifest("http://127.0.0.1:1", manifest_of(_app()))
    handlers = deployment.services[0].handlers
    assert handlers["void"].input == InputRules(content_type=None)
    assert handlers["void"].output == OutputRules(content_type=None)
    assert handlers["raw"].input == InputRules(content_type="*/*", non_empty=True)
    assert handlers["raw"].output == OutputRules("application/octet-stream")


def test_a_manifest_without_payloads_gets_restates_defaults() -> None:
    manifest = pb.Manifest(
        protocol_version=1,
        services=[
            pb.ServiceManifest(
                name="Old", type=pb.SERVICE_TYPE_SERVICE, handlers=[pb.HandlerManifest(name="h")]
            )
        ],
    )
    handler = deployment_from_manifest("http://127.0.0.1:1", manifest).services[0].handlers["h"]
    assert (handler.input, handler.output) == (InputRules(), OutputRules())


@pytest.mark.parametrize("accept", ["json", "*/json", "/x", "text/"])
def test_a_bad_accept_is_refused_at_registration(accept: str) -> None:
    manifest = manifest_of(_app())
    manifest.services[0].handlers[0].input.content_type = accept
    with pytest.raises(DiscoveryError, match="accepted content type"):
        deployment_from_manifest("http://127.0.0.1:1", manifest)
