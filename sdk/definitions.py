"""Declaring services, virtual objects and workflows, and bundling them into an app."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeVar

from sdk.serde import JsonSerde, Serde

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

ServiceType = Literal["service", "virtual_object", "workflow"]
HandlerKind = Literal["exclusive", "shared", "workflow"] | None

_HANDLER_ATTRIBUTE = "__cairn_handler__"


@dataclass(frozen=True)
class InvocationRetryPolicy:
    """How the runtime retries an invocation whose attempt failed with a non-terminal error.

    The delay before retry n (n = 1, 2, ...) is ``initial_interval * exponentiation_factor**(n-1)``
    capped at ``max_interval``. ``max_attempts`` (None = unlimited) ends the invocation with the
    last failure once reached (``on_max_attempts="kill"``; pausing is not supported).
    """

    initial_interval: timedelta | None = None
    exponentiation_factor: float | None = None
    max_interval: timedelta | None = None
    max_attempts: int | None = None
    on_max_attempts: Literal["kill"] = "kill"


@dataclass
class HandlerOptions:
    inactivity_timeout: timedelta | None = None
    abort_timeout: timedelta | None = None
    idempotency_retention: timedelta | None = None
    workflow_retention: timedelta | None = None
    invocation_retry_policy: InvocationRetryPolicy | None = None


@dataclass
class Handler:
    """One handler: the user function plus what the runtime and the SDK need to know about it."""

    service: ServiceDefinition
    name: str
    kind: HandlerKind
    fn: Callable[..., Awaitable[Any]]
    takes_argument: bool
    input_serde: Serde[Any]
    output_serde: Serde[Any]
    options: HandlerOptions

    def effective(self, attribute: str) -> Any:
        """A handler option, falling back to the service-wide one."""
        value = getattr(self.options, attribute)
        return value if value is not None else getattr(self.service.options, attribute)


@dataclass
class ServiceDefinition:
    name: str
    type: ServiceType
    description: str | None
    options: HandlerOptions
    handlers: dict[str, Handler] = field(default_factory=dict)


def _argument_type(fn: Callable[..., Any]) -> tuple[bool, Any, Any]:
    """Whether the handler takes an argument after ctx, its type and its return type."""
    parameters = list(inspect.signature(fn).parameters.values())
    if not parameters:
        raise TypeError(f"handler {fn.__qualname__} must take the context as first parameter")
    if len(parameters) > 2:
        raise TypeError(f"handler {fn.__qualname__} takes (ctx) or (ctx, argument), no more")
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to plain JSON
        hints = {}
    argument_type = hints.get(parameters[1].name) if len(parameters) == 2 else None
    return len(parameters) == 2, argument_type, hints.get("return")


class _Definable:
    """What Service, VirtualObject and Workflow share: a name, options and handlers."""

    _type: ServiceType

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        workflow_retention: timedelta | None = None,
    ) -> None:
        if not name or "/" in name:
            raise ValueError(f"invalid service name {name!r}")
        self.name = name
        self.definition = ServiceDefinition(
            name,
            self._type,
            description,
            HandlerOptions(
                inactivity_timeout=inactivity_timeout,
                abort_timeout=abort_timeout,
                idempotency_retention=idempotency_retention,
                workflow_retention=workflow_retention,
                invocation_retry_policy=invocation_retry_policy,
            ),
        )

    @property
    def handlers(self) -> dict[str, Handler]:
        return self.definition.handlers

    def _register(
        self,
        fn: Callable[..., Awaitable[Any]],
        name: str | None,
        kind: HandlerKind,
        input_serde: Serde[Any] | None,
        output_serde: Serde[Any] | None,
        options: HandlerOptions,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"handler {fn.__qualname__} must be an async function")
        handler_name = name or fn.__name__
        if handler_name in self.definition.handlers:
            raise ValueError(f"{self.name} already has a handler named {handler_name!r}")
        takes_argument, argument_type, return_type = _argument_type(fn)
        handler = Handler(
            service=self.definition,
            name=handler_name,
            kind=kind,
            fn=fn,
            takes_argument=takes_argument,
            input_serde=input_serde or JsonSerde(argument_type),
            output_serde=output_serde or JsonSerde(return_type),
            options=options,
        )
        self.definition.handlers[handler_name] = handler
        setattr(fn, _HANDLER_ATTRIBUTE, handler)


def _options(
    inactivity_timeout: timedelta | None,
    idempotency_retention: timedelta | None,
    invocation_retry_policy: InvocationRetryPolicy | None,
    workflow_retention: timedelta | None = None,
    abort_timeout: timedelta | None = None,
) -> HandlerOptions:
    return HandlerOptions(
        inactivity_timeout=inactivity_timeout,
        abort_timeout=abort_timeout,
        idempotency_retention=idempotency_retention,
        workflow_retention=workflow_retention,
        invocation_retry_policy=invocation_retry_policy,
    )


class Service(_Definable):
    """A stateless service: handlers run concurrently, any number at a time."""

    _type = "service"

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
    ) -> Callable[[F], F]:
        def register(fn: F) -> F:
            options = _options(
                inactivity_timeout,
                idempotency_retention,
                invocation_retry_policy,
                abort_timeout=abort_timeout,
            )
            self._register(fn, name, None, input_serde, output_serde, options)
            return fn

        return register


class VirtualObject(_Definable):
    """Keyed state with one exclusive handler at a time per key; shared handlers read only."""

    _type = "virtual_object"

    def handler(
        self,
        name: str | None = None,
        kind: Literal["exclusive", "shared"] = "exclusive",
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
    ) -> Callable[[F], F]:
        if kind not in ("exclusive", "shared"):
            raise ValueError(f"kind must be 'exclusive' or 'shared', got {kind!r}")

        def register(fn: F) -> F:
            options = _options(
                inactivity_timeout,
                idempotency_retention,
                invocation_retry_policy,
                abort_timeout=abort_timeout,
            )
            self._register(fn, name, kind, input_serde, output_serde, options)
            return fn

        return register


class Workflow(_Definable):
    """A ``run`` handler executed at most once per key, plus shared handlers to signal/query it."""

    _type = "workflow"

    def main(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        workflow_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
    ) -> Callable[[F], F]:
        def register(fn: F) -> F:
            if any(h.kind == "workflow" for h in self.handlers.values()):
                raise ValueError(f"workflow {self.name} already has a main handler")
            options = _options(
                inactivity_timeout,
                None,
                invocation_retry_policy,
                workflow_retention,
                abort_timeout=abort_timeout,
            )
            self._register(fn, name, "workflow", input_serde, output_serde, options)
            return fn

        return register

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] | None = None,
        output_serde: Serde[Any] | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
    ) -> Callable[[F], F]:
        def register(fn: F) -> F:
            options = _options(
                inactivity_timeout,
                idempotency_retention,
                invocation_retry_policy,
                abort_timeout=abort_timeout,
            )
            self._register(fn, name, "shared", input_serde, output_serde, options)
            return fn

        return register


def handler_of(fn: Callable[..., Any]) -> Handler:
    """The handler a decorated function registered (for ``ctx.service_call(fn, ...)`` etc.)."""
    handler = getattr(fn, _HANDLER_ATTRIBUTE, None)
    if not isinstance(handler, Handler):
        name = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(f"{name} is not a handler: decorate it with @service.handler()")
    return handler


class App:
    """The services an endpoint serves."""

    def __init__(self, services: Iterable[Service | VirtualObject | Workflow]) -> None:
        self.services: dict[str, ServiceDefinition] = {}
        for service in services:
            if service.name in self.services:
                raise ValueError(f"two services are named {service.name!r}")
            if not service.handlers:
                raise ValueError(f"service {service.name!r} has no handlers")
            if service.definition.type == "workflow" and not any(
                h.kind == "workflow" for h in service.handlers.values()
            ):
                raise ValueError(f"workflow {service.name!r} needs a @main() handler")
            self.services[service.name] = service.definition

    def handler(self, service: str, handler: str) -> Handler | None:
        definition = self.services.get(service)
        return definition.handlers.get(handler) if definition is not None else None


def app(services: Iterable[Service | VirtualObject | Workflow], **_: Any) -> App:
    """Bundle services into an app that ``serve`` / ``cairn dev`` can run."""
    return App(services)
