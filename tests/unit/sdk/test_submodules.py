"""restate-sdk 1.3's submodules that handler code imports (``from restate.exceptions import ...``).

Each one resolves through the alias package (``tests/compat/restate``) to the very objects of the
``sdk`` module of the same name.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import msgspec
import pydantic
import pytest

import sdk

# Per submodule of restate-sdk 1.3: the public names handler code can import from it (all provided)
# and the public names Cairn deliberately does not provide, with the reason. Helpers restate-sdk
# uses internally (``serde.try_import_pydantic_base_model``, ``context.HandlerType``, TypeVars...)
# are neither.
PROVIDED: dict[str, list[str]] = {
    "exceptions": ["TerminalError", "SdkInternalBaseException", "is_internal_exception"],
    "serde": [
        "Serde",
        "BytesSerde",
        "JsonSerde",
        "DefaultSerde",
        "PydanticJsonSerde",
        "MsgspecJsonSerde",
    ],
    "context": [
        "Context",
        "ObjectContext",
        "ObjectSharedContext",
        "WorkflowContext",
        "WorkflowSharedContext",
        "DurablePromise",
        "Request",
        "RestateDurableFuture",
        "RestateDurableCallFuture",
        "RestateDurableSleepFuture",
        "SendHandle",
        "RunOptions",
    ],
    "object": ["VirtualObject"],
    "service": ["Service"],
    "workflow": ["Workflow"],
    "retry_policy": ["InvocationRetryPolicy"],
    "asyncio": ["gather", "select", "as_completed", "wait_completed"],
    "logging": ["getLogger", "RestateLoggingFilter"],
    "endpoint": ["app"],
}
NOT_PROVIDED: dict[str, dict[str, str]] = {
    # A retry after a delay the handler chooses: Cairn's retries follow the retry policy only.
    "exceptions": {
        "RetryableError": "handler-chosen retry delay",
        # The SDK's own control-flow signals; handlers test them with is_internal_exception.
        "SuspendedException": "internal signal",
        "SdkInternalException": "internal signal",
    },
    "context": {
        "ScopedContext": "scopes",  # as restate.ScopedContext (tests/unit/sdk/test_names.py)
        "KeyValueStore": "abstract base of ObjectContext; ours has no such split",
        "AttemptFinishedEvent": "Request has no attempt_finished_event",
    },
    # restate-sdk's builder behind restate.app(); handler code calls app().
    "endpoint": {"Endpoint": "builder class"},
}


def _alias(module: str) -> ModuleType:
    return importlib.import_module(f"restate.{module}")


@pytest.mark.parametrize(
    ("module", "name"), [(m, n) for m, names in PROVIDED.items() for n in names]
)
def test_each_submodule_name_resolves_through_the_alias_to_the_sdk_object(
    module: str, name: str
) -> None:
    ours = importlib.import_module(f"sdk.{module}")
    assert name in ours.__all__
    assert getattr(_alias(module), name) is getattr(ours, name)


@pytest.mark.parametrize("module", sorted(PROVIDED))
def test_the_alias_submodules_serve_exactly_the_sdk_module_names(module: str) -> None:
    ours = importlib.import_module(f"sdk.{module}")
    # sdk.endpoint has Cairn's own names besides (serve, start_server...); they come along.
    assert set(PROVIDED[module]) <= set(ours.__all__)
    public = {n for n in vars(_alias(module)) if not n.startswith("_")}
    assert public == set(ours.__all__)
    assert not public & set(NOT_PROVIDED.get(module, {}))


def test_the_import_lines_of_restates_test_services() -> None:
    # Verbatim from restatedev/sdk-python test-services/services/*.py.
    from restate.context import (
        Context,
        ObjectContext,
        ObjectSharedContext,
        RestateDurableCallFuture,
        SendHandle,
    )
    from restate.exceptions import TerminalError
    from restate.object import VirtualObject
    from restate.serde import BytesSerde, JsonSerde

    assert (Context, ObjectContext, ObjectSharedContext) == (
        sdk.Context,
        sdk.ObjectContext,
        sdk.ObjectSharedContext,
    )
    assert (RestateDurableCallFuture, SendHandle) == (sdk.RestateDurableCallFuture, sdk.SendHandle)
    assert TerminalError is sdk.TerminalError
    assert VirtualObject is sdk.VirtualObject
    assert (BytesSerde, JsonSerde) == (sdk.BytesSerde, sdk.JsonSerde)


def test_submodules_are_attributes_of_the_package_after_import() -> None:
    import restate
    import restate.asyncio
    import restate.exceptions

    assert restate.exceptions.TerminalError is sdk.TerminalError
    assert restate.asyncio.select is sdk.select
    # The alias's asyncio does not hide the standard library's for code importing both.
    import asyncio

    assert asyncio.sleep is not None and not hasattr(asyncio, "wait_completed")


class Point(msgspec.Struct):
    x: int
    y: int


class Profile(pydantic.BaseModel):
    name: str
    age: int = 0


def test_pydantic_and_msgspec_serdes_decode_into_their_model() -> None:
    from restate.serde import MsgspecJsonSerde, PydanticJsonSerde

    profile = PydanticJsonSerde(Profile)
    assert profile.deserialize(b'{"name": "ada"}') == Profile(name="ada", age=0)
    assert profile.serialize(Profile(name="ada", age=3)) == b'{"name":"ada","age":3}'
    point = MsgspecJsonSerde(Point)
    assert point.deserialize(point.serialize(Point(1, 2))) == Point(1, 2)
    with pytest.raises(sdk.TerminalError) as caught:
        point.deserialize(b'{"x": "one", "y": 2}')
    assert caught.value.status_code == 400
