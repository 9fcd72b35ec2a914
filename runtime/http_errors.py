"""The one renderer of HTTP error bodies (ingress and admin): ``{"code", "message"}``, with
``"source"`` on the ingress. Its own module so that the HTTP bounds (``runtime.http_limits``),
which the ingress imports, answer their 429/503/408 through it too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from aiohttp import web

ERROR_SOURCE_HEADER = "x-restate-error-source"
# Who produced an error, as Restate tells its clients: the ingress refused the request, or the
# invocation itself ended with this failure (a TerminalError).
ErrorSource = Literal["ingress", "invocation"]


def error_response(
    status: int,
    message: str,
    *,
    source: ErrorSource | None = None,
    headers: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
    extra: Mapping[str, object] | None = None,
) -> web.Response:
    """The one renderer of error bodies: ``{"code", "message"}``, plus ``"source"`` (and the
    ``x-restate-error-source`` header) on the ingress, and a TerminalError's ``"metadata"`` when
    it has any, and ``extra`` fields (a 503's failing tasks, a stopped call's invocation id).
    ``status`` is the HTTP status; the body's code is the failure's own code, which differs only
    for codes outside 400..599."""
    body: dict[str, object] = {"code": status, "message": message, **(extra or {})}
    all_headers = dict(headers or {})
    if source is not None:
        body["source"] = source
        all_headers[ERROR_SOURCE_HEADER] = source
    if metadata:
        body["metadata"] = dict(metadata)
    http_status = status if 400 <= status <= 599 else 500
    return web.json_response(body, status=http_status, headers=all_headers)
