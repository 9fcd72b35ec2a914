"""Declaring services, virtual objects and workflows, and bundling them into an app."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeVar

from sdk._transport.identity import parse_public_key
from sdk.serde import JsonSerde, Serde

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
ContextManagerFactory = Callable[[], AbstractAsyncContextManager[Any]]

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
    # invocation_context_managers: the service's then the handler's, entered around each attempt
    context_managers: list[ContextManagerFactory] = field(default_factory=list)
    # shown by the admin API, as Restate shows them: the docstring and the metadata= keyword
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # The request content types the ingress lets through and the response's content type.
    accept: str = "application/json"
    content_type: str = "application/json"
    returns_value: bool = True  # False for ``-> None`` or no annotation: no output content type

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
    context_managers: list[ContextManagerFactory] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


def refuse_unsupported(
    where: str,
    journal_retention: timedelta | None = None,
    ingress_private: bool | None = None,
) -> None:
    """Refuse restate-sdk options Cairn does not implement, rather than silently ignore them."""
    if journal_retention is not None and journal_retention != timedelta(0):
        raise NotImplementedError(
            f"{where}: journal_retention is not supported yet (Cairn deletes a journal when its "
            "invocation completes, i.e. only journal_retention=timedelta(0) is possible)"
        )
    if ingress_private:
        raise NotImplementedError(
            f"{where}: ingress_private is not supported yet (every handler is reachable through "
            "the ingress)"
        )


def _checked_metadata(where: str, metadata: dict[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise TypeError(f"{where}: metadata must be dict[str, str], got {metadata!r}")
    return dict(metadata)


def _argument_type(fn: Callable[..., Any]) -> tuple[bool, Any, Any]:
    """Whether the handler takes an argument after ctx, its type and its return type
    (``None`` when it returns nothing: no annotation or ``-> None``)."""
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
    return_type = hints.get("return")
    return len(parameters) == 2, argument_type, None if return_type is type(None) else return_type


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
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        invocation_context_managers: Sequence[ContextManagerFactory] | None = None,
    ) -> None:
        # enable_lazy_state / state_preload only tune how restate-sdk fetches state; Cairn always
        # reads state lazily, with the same results, so they are accepted and have no effect.
        if not name or "/" in name:
            raise ValueError(f"invalid service name {name!r}")
        refuse_unsupported(name, journal_retention, ingress_private)
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
            context_managers=list(invocation_context_managers or []),
            metadata=_checked_metadata(name, metadata),
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
        extras: _HandlerExtras,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"handler {fn.__qualname__} must be an async function")
        handler_name = name or fn.__name__
        refuse_unsupported(
            f"{self.name}/{handler_name}",
            extras.journal_retention,
            extras.ingress_private,
        )
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
            context_managers=[
                *self.definition.context_managers,
                *(extras.context_managers or []),
            ],
            description=inspect.getdoc(fn),
            metadata=_checked_metadata(f"{self.name}/{handler_name}", extras.metadata),
            accept=extras.accept,
            content_type=extras.content_type,
            returns_value=return_type is not None,
        )
        self.definition.handlers[handler_name] = handler
        setattr(fn, _HANDLER_ATTRIBUTE, handler)


@dataclass(frozen=True)
class _HandlerExtras:
    """Per-handler keywords that are checked (unsupported ones) or kept as they are."""

    journal_retention: timedelta | None
    ingress_private: bool | None
    context_managers: Sequence[ContextManagerFactory] | None
    metadata: dict[str, str] | None
    # the request content types the ingress lets through, and the response's content type
    accept: str
    content_type: str


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
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        invocation_context_managers: Sequence[ContextManagerFactory] | None = None,
    ) -> Callable[[F], F]:
        extras = _HandlerExtras(
            journal_retention,
            ingress_private,
            invocation_context_managers,
            metadata,
            accept,
            content_type,
        )

        def register(fn: F) -> F:
            options = _options(
                inactivity_timeout,
                idempotency_retention,
                invocation_retry_policy,
                abort_timeout=abort_timeout,
            )
            self._register(fn, name, None, input_serde, output_serde, options, extras)
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
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        invocation_context_managers: Sequence[ContextManagerFactory] | None = None,
    ) -> Callable[[F], F]:
        extras = _HandlerExtras(
            journal_retention,
            ingress_private,
            invocation_context_managers,
            metadata,
            accept,
            content_type,
        )
        if kind not in ("exclusive", "shared"):
            raise ValueError(f"kind must be 'exclusive' or 'shared', got {kind!r}")

        def register(fn: F) -> F:
            options = _options(
                inactivity_timeout,
                idempotency_retention,
                invocation_retry_policy,
                abort_timeout=abort_timeout,
            )
            self._register(fn, name, kind, input_serde, output_serde, options, extras)
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
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        invocation_context_managers: Sequence[ContextManagerFactory] | None = None,
    ) -> Callable[[F], F]:
        extras = _HandlerExtras(
            journal_retention,
            ingress_private,
            invocation_context_managers,
            metadata,
            accept,
            content_type,
        )

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
            self._register(fn, name, "workflow", input_serde, output_serde, options, extras)
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
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        invocation_context_managers: Sequence[ContextManagerFactory] | None = None,
    ) -> Callable[[F], F]:
        extras = _HandlerExtras(
            journal_retention,
            ingress_private,
            invocation_context_managers,
            metadata,
            accept,
            content_type,
        )

        def register(fn: F) -> F:
            options = _options(
                inactivity_timeout,
                idempotency_retention,
                invocation_retry_policy,
                abort_timeout=abort_timeout,
            )
            self._register(fn, name, "shared", input_serde, output_serde, options, extras)
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

    def __init__(
        self,
        services: Iterable[Service | VirtualObject | Workflow],
        identity_keys: Sequence[str] = (),
    ) -> None:
        # Public keys (publickeyv1_...) of the runtimes allowed to call this app's endpoint.
        self.identity_keys = list(identity_keys)
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


def app(
    services: Iterable[Service | VirtualObject | Workflow],
    protocol: Literal["bidi", "request_response"] | None = None,
    identity_keys: list[str] | None = None,
    journal_value_codec: object | None = None,
) -> App:
    """Bundle services into an app that ``serve`` / ``cairn dev`` can run.

    ``identity_keys``: public keys (``publickeyv1_...``, from ``cairn keys generate``) of the
    runtimes whose signed calls the endpoint serves; without them it serves any caller.
    restate-sdk's keywords that Cairn cannot honour yet are refused, never silently ignored.
    """
    for key in identity_keys or ():
        parse_public_key(key)  # a bad key is an error now, not a refused call later
    if protocol not in (None, "bidi"):
        raise NotImplementedError(
            f"protocol={protocol!r} is not supported: Cairn endpoints always stream (bidi)"
        )
    if journal_value_codec is not None:
        raise NotImplementedError("journal_value_codec is not supported yet")
    return App(services, identity_keys or ())
