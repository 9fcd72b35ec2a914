"""The public SDK surface: restate-sdk names, the manifest, serde."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import msgspec
import pytest

import sdk as restate
from proto import endpoint_pb2 as pb
from sdk._transport.server import manifest_of
from sdk.context import awakeable_id_of, check_awakeable_id
from sdk.serde import JsonSerde

RESTATE_NAMES = [
    "Service",
    "VirtualObject",
    "Workflow",
    "Context",
    "ObjectContext",
    "ObjectSharedContext",
    "WorkflowContext",
    "WorkflowSharedContext",
    "TerminalError",
    "RunOptions",
    "app",
    "serve",
    "select",
    "gather",
    "as_completed",
    "wait_completed",
    "InvocationRetryPolicy",
    "Serde",
    "RestateDurableFuture",
    "RestateDurableCallFuture",
    "RestateDurableSleepFuture",
]


@pytest.mark.parametrize("name", RESTATE_NAMES)
def test_restate_sdk_names_are_exported(name: str) -> None:
    assert hasattr(restate, name)


def _app() -> restate.App:
    svc = restate.Service(
        "Svc",
        invocation_retry_policy=restate.InvocationRetryPolicy(
            initial_interval=timedelta(milliseconds=50), max_attempts=3
        ),
    )
    obj = restate.VirtualObject("Obj", inactivity_timeout=timedelta(milliseconds=100))
    wf = restate.Workflow("Wf", workflow_retention=timedelta(hours=1))

    @svc.handler()
    async def plain(ctx: restate.Context, name: str) -> str:
        return name

    @obj.handler()
    async def write(ctx: restate.ObjectContext) -> None: ...

    @obj.handler(kind="shared")
    async def read(ctx: restate.ObjectSharedContext) -> None: ...

    @wf.main()
    async def run(ctx: restate.WorkflowContext) -> None: ...

    @wf.handler()
    async def signal(ctx: restate.WorkflowSharedContext, value: int) -> None: ...

    return restate.app(services=[svc, obj, wf])


def test_manifest_lists_services_kinds_and_options() -> None:
    manifest = manifest_of(_app())
    services = {s.name: s for s in manifest.services}
    assert services["Svc"].type == pb.SERVICE_TYPE_SERVICE
    plain = services["Svc"].handlers[0]
    assert plain.retry_policy.initial_interval_ms == 50 and plain.retry_policy.max_attempts == 3
    kinds = {h.name: h.kind for h in services["Obj"].handlers}
    assert kinds == {"write": pb.HANDLER_KIND_EXCLUSIVE, "read": pb.HANDLER_KIND_SHARED}
    assert services["Obj"].handlers[0].inactivity_timeout_ms == 100
    wf_kinds = {h.name: h.kind for h in services["Wf"].handlers}
    assert wf_kinds == {"run": pb.HANDLER_KIND_WORKFLOW, "signal": pb.HANDLER_KIND_SHARED}
    assert services["Wf"].handlers[0].workflow_retention_ms == 3_600_000


def test_bad_definitions_are_rejected_early() -> None:
    svc = restate.Service("Bad")
    with pytest.raises(TypeError):
        svc.handler()(lambda ctx: None)  # type: ignore[type-var]
    with pytest.raises(ValueError):
        restate.app(services=[restate.Workflow("NoMain")])
    with pytest.raises(ValueError):
        restate.VirtualObject("O").handler(kind="weird")  # type: ignore[arg-type]


class Point(msgspec.Struct):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    width: int


def test_serde_round_trips_typed_values() -> None:
    assert JsonSerde(Point).deserialize(JsonSerde().serialize(Point(1, 2))) == Point(1, 2)
    assert JsonSerde(Box).deserialize(JsonSerde().serialize(Box(3))) == Box(3)
    assert JsonSerde(int).deserialize(b"") is None
    assert JsonSerde().serialize(None) == b""
    with pytest.raises(restate.TerminalError) as raised:
        JsonSerde(int).deserialize(b'"nope"')
    assert raised.value.status_code == 400


def test_serde_handles_pydantic_models() -> None:
    pydantic = pytest.importorskip("pydantic")

    class User(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        name: str

    encoded = JsonSerde().serialize(User(name="ada"))
    assert JsonSerde(User).deserialize(encoded) == User(name="ada")


def test_awakeable_ids_round_trip_the_runtime_format() -> None:
    from partition_processor.ids import invocation_id_for, parse_awakeable_id

    invocation_id = invocation_id_for("Svc", "handler", None, None, entropy=bytes(16))
    awakeable = awakeable_id_of(invocation_id, 7)
    assert parse_awakeable_id(awakeable) == (invocation_id, 7)
    check_awakeable_id(awakeable)
    for bad in ("", "sign_1", "nope", "sign_1!!!"):
        with pytest.raises(restate.TerminalError):
            check_awakeable_id(bad)
