"""Cairn's Python SDK: durable handlers with the names of the ``restate-sdk`` package.

``import sdk as restate`` and write services, virtual objects and workflows as with Restate.
"""

from sdk import serde
from sdk.context import (
    Context,
    DurablePromise,
    ObjectContext,
    ObjectSharedContext,
    Request,
    WorkflowContext,
    WorkflowSharedContext,
)
from sdk.definitions import (
    App,
    InvocationRetryPolicy,
    Service,
    VirtualObject,
    Workflow,
    app,
)
from sdk.endpoint import RunningEndpoint, serve, start_server
from sdk.errors import TerminalError
from sdk.futures import (
    CallFuture,
    DurableFuture,
    SendHandle,
    as_completed,
    gather,
    select,
    wait_completed,
)
from sdk.run import RunOptions
from sdk.serde import BytesSerde, DefaultSerde, JsonSerde, Serde

RestateDurableFuture = DurableFuture
RestateDurableCallFuture = CallFuture
RestateDurableSleepFuture = DurableFuture

__all__ = [
    "App",
    "BytesSerde",
    "CallFuture",
    "Context",
    "DefaultSerde",
    "DurableFuture",
    "DurablePromise",
    "InvocationRetryPolicy",
    "JsonSerde",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RunOptions",
    "RunningEndpoint",
    "SendHandle",
    "Serde",
    "Service",
    "TerminalError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "app",
    "as_completed",
    "gather",
    "select",
    "serde",
    "serve",
    "start_server",
    "wait_completed",
]
