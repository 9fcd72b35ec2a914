"""Cairn's Python SDK: durable handlers with the names of the ``restate-sdk`` package.

``import sdk as restate`` and write services, virtual objects and workflows as with Restate.
"""

from sdk import logging, serde
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
from sdk.errors import SdkInternalBaseException, TerminalError, is_internal_exception
from sdk.futures import (
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
    as_completed,
    gather,
    select,
    wait_completed,
)
from sdk.logging import RestateLoggingFilter, getLogger
from sdk.run import RunOptions
from sdk.serde import BytesSerde, DefaultSerde, JsonSerde, Serde

__all__ = [
    "App",
    "BytesSerde",
    "Context",
    "DefaultSerde",
    "DurablePromise",
    "InvocationRetryPolicy",
    "JsonSerde",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RestateLoggingFilter",
    "RunOptions",
    "RunningEndpoint",
    "SdkInternalBaseException",
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
    "getLogger",
    "is_internal_exception",
    "logging",
    "select",
    "serde",
    "serve",
    "start_server",
    "wait_completed",
]
