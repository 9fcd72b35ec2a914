"""Admin routes of subscriptions, in Restate's shape: ``POST|GET /subscriptions``,
``GET|DELETE /subscriptions/{id}``. Errors are JSON ``{"code", "message"}``."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from aiohttp import web

from runtime.ingress.http import error_response
from runtime.metadata import Registry, Subscription
from runtime.subscriptions.spec import KafkaCluster, SubscriptionError, check_new, subscription_json


class _NewSubscription(msgspec.Struct, forbid_unknown_fields=True):
    source: str
    sink: str
    options: dict[str, str] = {}


class SubscriptionAdmin:
    def __init__(
        self,
        registry: Registry,
        clusters: dict[str, KafkaCluster],
        *,
        default_max_in_flight: int,
    ) -> None:
        self._registry = registry
        self._clusters = clusters
        self._default_max_in_flight = default_max_in_flight

    def install(self, app: web.Application) -> None:
        app.router.add_post("/subscriptions", self._create)
        app.router.add_get("/subscriptions", self._list)
        app.router.add_get("/subscriptions/{id}", self._get)
        app.router.add_delete("/subscriptions/{id}", self._delete)

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = msgspec.json.decode(await request.read(), type=_NewSubscription)
        except msgspec.ValidationError as exc:
            return error_response(400, f"bad subscription: {exc}")
        except msgspec.DecodeError as exc:
            return error_response(400, f"the body is not valid JSON: {exc}")
        try:
            options = check_new(
                self._registry,
                self._clusters,
                body.source,
                body.sink,
                body.options,
                self._default_max_in_flight,
            )
        except SubscriptionError as exc:
            return error_response(exc.status, exc.message)
        subscription = Subscription(f"sub_{uuid.uuid4().hex[:24]}", body.source, body.sink, options)
        stored = await self._registry.add_subscription(subscription)
        return web.json_response(subscription_json(stored), status=201)

    async def _list(self, request: web.Request) -> web.Response:
        sink, source = request.query.get("sink"), request.query.get("source")
        rows: list[dict[str, Any]] = [
            subscription_json(s)
            for s in self._registry.subscriptions()
            if (sink is None or s.sink == sink) and (source is None or s.source == source)
        ]
        return web.json_response({"subscriptions": rows})

    async def _get(self, request: web.Request) -> web.Response:
        subscription = self._registry.subscription(request.match_info["id"])
        if subscription is None:
            return error_response(404, f"subscription {request.match_info['id']!r} not found")
        return web.json_response(subscription_json(subscription))

    async def _delete(self, request: web.Request) -> web.Response:
        subscription_id = request.match_info["id"]
        if self._registry.subscription(subscription_id) is None:
            return error_response(404, f"subscription {subscription_id!r} not found")
        await self._registry.remove_subscription(subscription_id)
        return web.Response(status=202)
