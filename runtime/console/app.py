"""The web console's routes (README "Web console"): server-rendered pages under ``/ui`` of the
admin API, behind its token; actions are POSTs guarded by ``csrf`` and go through the log like
the admin API's own (the same gateway path, the same commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment, PackageLoader

from partition_processor.tables import KeyValueReader
from runtime.admin.manage import ACTIONS, Action, manage_invocation
from runtime.admin.placement import ClusterAdmin
from runtime.admin.sql import SqlQueries
from runtime.admin.state import ObjectState, StateEditError, VersionMismatch
from runtime.console import csrf, views
from runtime.console.state_edit import EditError, parse_edit
from runtime.console.throughput import Throughput, sparkline
from runtime.ingress.gateway import InvocationGateway, ResultUnavailable
from runtime.ingress.validation import InvalidRequest
from runtime.metadata import Registry

PREFIX = "/ui"
STATIC = Path(__file__).parent / "static"
# The console's own static files, listed once: only these are served. (aiohttp's static route
# looked any name up on disk, and one too long for the file system was a 500.)
_STATIC_FILES = {path.name: path for path in STATIC.iterdir() if path.is_file()}
# Injected markup cannot run even if a value escaped the templates: scripts and styles come
# only from the console's own static files, and no other site may frame it.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_ACTION_VERBS = {"cancel": "Cancel", "kill": "Kill", "purge": "Purge"}


class Console:
    """Installs the console's routes on the admin application (``install``)."""

    def __init__(
        self,
        *,
        registry: Registry,
        cluster: ClusterAdmin,
        sql: SqlQueries,
        gateway: InvocationGateway,
        store: KeyValueReader,
        partitions: int,
        retry_after_s: int,
        throughput: Throughput,
        object_state: ObjectState,
    ) -> None:
        self._registry = registry
        self._cluster = cluster
        self._sql = sql
        self._gateway = gateway
        self._store = store
        self._partitions = partitions
        self._retry_after_s = retry_after_s
        self._throughput = throughput
        self._object_state = object_state
        # Autoescape everything: every value a page shows is text, whatever it holds.
        self._templates = Environment(
            loader=PackageLoader("runtime.console", "templates"), autoescape=True
        )
        self._templates.filters["utc"] = views.utc

    def install(self, app: web.Application) -> None:
        # Every node registers the read, so that any node can forward it to a replica.
        self._cluster.add_read(
            views.LINKS_READ, lambda p, args: views.links_here(self._store, p, args)
        )
        router = app.router
        router.add_get(PREFIX, self._overview)
        router.add_get(f"{PREFIX}/", self._overview)
        router.add_get(f"{PREFIX}/invocations", self._invocations)
        router.add_get(f"{PREFIX}/invocations/{{id}}", self._invocation)
        router.add_post(f"{PREFIX}/invocations/{{id}}/{{action}}", self._act)
        router.add_get(f"{PREFIX}/state", self._state)
        router.add_post(f"{PREFIX}/state", self._edit_state)
        router.add_get(f"{PREFIX}/subscriptions", self._subscriptions)
        router.add_get(f"{PREFIX}/static/{{name}}", _static)

    # -- rendering

    def _render(
        self, request: web.Request, template: str, context: dict[str, Any], status: int = 200
    ) -> web.Response:
        token = csrf.token_of(request)
        fresh = token is None
        if token is None:
            token = csrf.new_token()
        page = self._templates.get_template(template).render(
            csrf=token, csrf_field=csrf.FIELD, csrf_header=csrf.HEADER, prefix=PREFIX, **context
        )
        response = web.Response(
            text=page, status=status, content_type="text/html", headers=_HEADERS
        )
        if fresh:
            csrf.set_cookie(response, token, secure=request.secure)
        return response

    def _error(self, request: web.Request, status: int, message: str) -> web.Response:
        return self._render(
            request, "error.html", {"status": status, "message": message}, status=status
        )

    # -- pages

    async def _overview(self, request: web.Request) -> web.Response:
        data = await views.overview(self._cluster, self._registry, self._sql)
        rates = self._throughput.rates()
        data["spark"] = sparkline(rates)
        data["rate_now"] = rates[-1] if rates else None
        data["rate_max"] = max(rates, default=None)
        return self._render(request, "overview.html", {"page": "overview", **data})

    async def _invocations(self, request: web.Request) -> web.Response:
        filters = views.Filters.of(request.query)
        data = await views.invocations(self._sql, filters)
        return self._render(
            request,
            "invocations.html",
            {
                "page": "invocations",
                "filters": filters,
                "statuses": views.STATUSES,
                "services": self._registry.services(),
                "actions": ACTIONS,
                **data,
            },
        )

    async def _invocation(self, request: web.Request) -> web.Response:
        try:
            data = await views.invocation(self._cluster, self._partitions, request.match_info["id"])
        except views.PageError as exc:
            return self._error(request, exc.status, exc.message)
        return self._render(
            request, "invocation.html", {"page": "invocations", "inv": data, "actions": ACTIONS}
        )

    async def _act(self, request: web.Request) -> web.Response:
        await csrf.check(request)
        invocation_id, action = request.match_info["id"], request.match_info["action"]
        if action not in ACTIONS:
            return self._error(request, 404, f"unknown action {action!r}")
        answer = await manage_invocation(
            self._gateway, invocation_id, cast(Action, action), self._retry_after_s
        )
        ok = answer.status < 300
        if answer.status == 202:
            message = "cancel signalled: the handler sees it at its next await"
        elif ok:
            message = f"{action}: done"
        else:
            assert isinstance(answer.body, bytes)
            body = views.json_or_none(answer.body) or {}
            message = f"{action} refused ({answer.status}): {body.get('message', '')}"
        context = {
            "ok": ok,
            "message": message,
            "invocation_id": invocation_id,
            "action": _ACTION_VERBS[action],
        }
        if request.headers.get("HX-Request") == "true":
            # (htmx swaps only 2xx answers: the outcome, good or bad, is in the fragment.)
            return self._render(request, "action_result.html", context)
        return self._render(
            request,
            "action_page.html",
            {"page": "invocations", **context},
            status=200 if ok else answer.status,
        )

    async def _state(self, request: web.Request) -> web.Response:
        saved = request.query.get("saved")
        notice = f"saved through the log: version {saved}" if saved else None
        return await self._state_page(
            request, request.query.get("service", ""), request.query.get("key"), notice
        )

    async def _state_page(
        self,
        request: web.Request,
        service: str,
        key: str | None,
        notice: str | None = None,
        *,
        ok: bool = True,
        status: int = 200,
    ) -> web.Response:
        objects = [s for s in self._registry.services() if s.service_type != "service"]
        context: dict[str, Any] = {
            "page": "state",
            "objects": objects,
            "service": service,
            "key": key,
            "keys": [],
            "keys_note": None,
            "state": None,
            "notice": notice,
            "notice_ok": ok,
        }
        if service:
            if self._registry.service(service) is None:
                return self._error(request, 404, f"service {service!r} not found")
            context["keys"], context["keys_note"] = await views.state_keys(self._sql, service)
        if service and key is not None:
            try:
                context["state"] = await views.object_state(
                    self._cluster, self._partitions, service, key
                )
            except views.PageError as exc:
                return self._error(request, exc.status, exc.message)
        return self._render(request, "state.html", context, status=status)

    async def _edit_state(self, request: web.Request) -> web.Response:
        """The edit form: the key's whole new state, through the log (``patch_state``), with
        the version the form was made from."""
        await csrf.check(request)
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        service, key = form.get("service", ""), form.get("key")
        try:
            edit = parse_edit(form)
            version = await self._object_state.patch_state(
                edit.service, edit.key, edit.new_state, edit.version
            )
        except EditError as exc:
            return await self._state_page(request, service, key, str(exc), ok=False, status=400)
        except VersionMismatch:
            notice = (
                "not saved: the state changed meanwhile (another edit or a handler). "
                "This page now shows the current state; make your change again."
            )
            return await self._state_page(request, service, key, notice, ok=False, status=409)
        except (StateEditError, InvalidRequest) as exc:
            message = f"not saved ({exc.status}): {exc.message}"
            return await self._state_page(
                request, service, key, message, ok=False, status=exc.status
            )
        except ResultUnavailable as exc:
            message = f"not confirmed (503): {exc}; reload to see whether it applied"
            return await self._state_page(request, service, key, message, ok=False, status=503)
        query = urlencode({"service": edit.service, "key": edit.key, "saved": version[:12]})
        raise web.HTTPSeeOther(f"{PREFIX}/state?{query}")

    async def _subscriptions(self, request: web.Request) -> web.Response:
        return self._render(
            request,
            "subscriptions.html",
            {"page": "subscriptions", "subscriptions": views.subscriptions(self._registry)},
        )


async def _static(request: web.Request) -> web.StreamResponse:
    path = _STATIC_FILES.get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path)
