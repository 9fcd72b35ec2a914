"""Admin: read and edit a virtual object's or workflow's state.

``GET /services/{service}/state/{key}``: the state and its version. ``POST
/services/{service}/state`` (Restate's "modify service state"): replace the whole state of one
key through the log, optionally only at a given version. ``ObjectState.patch_state`` is the same
edit for in-process callers (the web console).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from partition_processor import codes, keys
from partition_processor.commands import PatchState
from partition_processor.ids import object_partition_key, partition_of
from partition_processor.journal import Failure, Success
from partition_processor.tables import KeyValueReader, state_version
from runtime.admin.placement import ClusterAdmin
from runtime.http_errors import error_response
from runtime.http_limits import BodyTimeout, BodyTooLarge, read_body, timed_out
from runtime.ingress.gateway import InvocationGateway, ResultUnavailable
from runtime.ingress.http import shutting_down_response
from runtime.ingress.validation import InvalidRequest, check_json, check_text
from runtime.limits import SizePolicy
from runtime.metadata import Registry

_BODY_SHAPE = (
    'expected {"object_key": str, "version": str | null, "new_state": {"name": [byte, ...]}} '
    'or with "new_state_json": {"name": <JSON value>} instead of "new_state"'
)


class StateEditError(Exception):
    """A state edit that was refused; ``status`` is its HTTP status (the admin API's answer)."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownService(StateEditError):
    """No deployment serves the service (404)."""

    status = 404


class NotAnObject(StateEditError):
    """The service is a plain service: it has no state (400)."""

    status = 400


class VersionMismatch(StateEditError):
    """The state's current version is not the one given: nothing changed (409)."""

    status = 409


def value_json(value: bytes) -> Any:
    """Show a stored value as JSON when it is JSON, else as base64."""
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError:
        return {"base64": base64.b64encode(value).decode()}


def _new_state(body: dict[str, Any]) -> dict[str, bytes]:
    """The state a POST body asks for (``InvalidRequest`` 400 with the reason if malformed;
    ``patch_state`` checks the sizes)."""
    raw, as_json = body.get("new_state"), body.get("new_state_json")
    if (raw is None) == (as_json is None):
        raise InvalidRequest(
            400, f'give exactly one of "new_state" and "new_state_json"; {_BODY_SHAPE}'
        )
    given = raw if raw is not None else as_json
    if not isinstance(given, dict):
        raise InvalidRequest(400, f"the new state must be a JSON object; {_BODY_SHAPE}")
    state: dict[str, bytes] = {}
    for name, value in given.items():
        if raw is not None:
            if not isinstance(value, list) or not all(
                isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value
            ):
                raise InvalidRequest(
                    400, f"new_state[{name!r}] must be an array of bytes (integers 0..255)"
                )
            encoded = bytes(value)
        else:
            encoded = msgspec.json.encode(value)
        state[name] = encoded
    return state


class ObjectState:
    """The state routes, and ``patch_state`` for in-process callers.

    Reads come from this node's store, or from a replica of the key's partition when this node
    does not apply it; a patch is appended to the key's partition from any node (the leader that
    applies it answers this node's request through the cluster's result delivery).
    """

    def __init__(
        self,
        registry: Registry,
        store: KeyValueReader,
        partitions: int,
        *,
        gateway: InvocationGateway,
        cluster: ClusterAdmin,
        limits: SizePolicy,
        body_timeout_s: float,
        max_body_bytes: int,
        retry_after_s: int,
    ) -> None:
        self._registry = registry
        self._store = store
        self._partitions = partitions
        self._gateway = gateway
        self._cluster = cluster
        self._limits = limits
        self._body_timeout_s = body_timeout_s
        self._max_body_bytes = max_body_bytes
        self._retry_after_s = retry_after_s

    def install(self, app: web.Application) -> None:
        app.router.add_get("/services/{service}/state/{key}", self._get)
        app.router.add_post("/services/{service}/state", self._post)
        # What a node that does not apply a partition asks one of its replicas for.
        self._cluster.add_read("state", self._state_here)

    def _check_object(self, service: str) -> None:
        info = self._registry.service(service)
        if info is None:
            raise UnknownService(f"service {service!r} not found")
        if info.service_type not in ("virtual_object", "workflow"):
            raise NotAnObject(
                f"service {service!r} is a {info.service_type}: only virtual objects and "
                "workflows have state"
            )

    async def patch_state(
        self, service: str, key: str, new_state: dict[str, bytes], version: str | None
    ) -> str:
        """Replace the whole state of ``service``/``key`` with ``new_state`` through the log.

        Applied at once when no invocation of the key runs, else after the invocations queued
        before it (never under a running one). ``version`` (from ``GET .../state/{key}`` or a
        previous patch): applied only if the state still has it; None: unconditionally.

        Returns:
            The state's new version.

        Raises:
            UnknownService: no deployment serves ``service`` (404).
            NotAnObject: ``service`` is not a virtual object or workflow (400).
            VersionMismatch: the state's version is not ``version``; nothing changed (409).
            runtime.ingress.validation.InvalidRequest: a key, name or value over the size
                policy (400 / 413), or the log did not take the record (503).
            runtime.ingress.gateway.ResultUnavailable: appended but not confirmed within the
                leader timeout (no leader, or the object stays busy), or the node stops (503).
        """
        self._check_object(service)
        check_text(key, "the key", self._limits)
        for name, value in new_state.items():
            check_text(name, f"the state key {name[:40]!r}", self._limits)
            if len(value) > self._limits.entry_bytes:
                raise InvalidRequest(
                    413,
                    f"the value of {name[:40]!r} is {len(value)} bytes, over the limit of "
                    f"{self._limits.entry_bytes} bytes for a state value",
                )
        outcome = await self._gateway.patch_state(
            lambda sink: PatchState(service, key, dict(new_state), version, sink)
        )
        match outcome:
            case Success(value=new_version):
                return new_version.decode()
            case Failure(code=codes.STATE_VERSION_MISMATCH, message=message):
                raise VersionMismatch(message)
            case Failure(code=code, message=message):
                raise InvalidRequest(code if 400 <= code <= 599 else 500, message)
            case other:
                raise AssertionError(f"unexpected outcome {other!r}")

    async def _post(self, request: web.Request) -> web.Response:
        service = request.match_info["service"]
        try:
            raw = await read_body(request, self._body_timeout_s, self._max_body_bytes)
            check_json(raw)
            body = msgspec.json.decode(raw) if raw.strip() else None
            if not isinstance(body, dict):
                raise InvalidRequest(400, _BODY_SHAPE)
            unknown = set(body) - {"object_key", "version", "new_state", "new_state_json"}
            if unknown:
                raise InvalidRequest(400, f"unknown fields {sorted(unknown)}; {_BODY_SHAPE}")
            key, version = body.get("object_key"), body.get("version")
            if not isinstance(key, str):
                raise InvalidRequest(400, f'"object_key" must be a string; {_BODY_SHAPE}')
            if version is not None and not isinstance(version, str):
                raise InvalidRequest(400, f'"version" must be a string or null; {_BODY_SHAPE}')
            self._check_object(service)
            new_state = _new_state(body)
            new_version = await self.patch_state(service, key, new_state, version)
        except BodyTimeout as exc:
            return timed_out(exc, source=None)
        except BodyTooLarge as exc:
            return error_response(413, str(exc))
        except InvalidRequest as exc:
            return error_response(exc.status, exc.message, headers=exc.headers)
        except StateEditError as exc:
            return error_response(exc.status, exc.message)
        except ResultUnavailable as exc:
            return shutting_down_response(exc, self._retry_after_s)
        return web.json_response({"version": new_version})

    async def _get(self, request: web.Request) -> web.Response:
        """The state and its version. ``?format=bytes``: each value as its array of bytes (as
        the POST body's ``new_state``), for clients that write back what they read unchanged."""
        service, key = request.match_info["service"], request.match_info["key"]
        shown = request.query.get("format", "json")
        if shown not in ("json", "bytes"):
            return error_response(400, f"format must be json or bytes, got {shown!r}")
        try:
            check_text(key, "the key", self._limits)
        except InvalidRequest as exc:
            return error_response(exc.status, exc.message)
        if self._registry.service(service) is None:
            return error_response(404, f"service {service!r} not found")
        partition = partition_of(object_partition_key(service, key), self._partitions)
        args = {"service": service, "key": key, "format": shown}
        if (forwarded := await self._cluster.forward(partition, "state", args)) is not None:
            return forwarded
        return self._state_here(partition, args)

    def _state_here(self, partition: int, args: Mapping[str, str]) -> web.Response:
        service, key = args["service"], args["key"]
        prefix = keys.state_prefix(partition, service, key)
        entries = [(keys.state_name_of(k, prefix), v) for k, v in self._store.scan(prefix)]
        as_bytes = args.get("format") == "bytes"
        return web.json_response(
            {
                "service": service,
                "key": key,
                "version": state_version(entries),
                "state": {
                    name: list(value) if as_bytes else value_json(value) for name, value in entries
                },
            }
        )
