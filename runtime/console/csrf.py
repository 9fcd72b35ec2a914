"""The console's guard against cross-site requests: a double-submitted token.

Each browser session gets a random token in a ``SameSite=Strict``, ``HttpOnly`` cookie; every
form carries it in a hidden field (and htmx requests in the ``X-CSRF-Token`` header). A POST is
accepted only when the two are present and equal (compared in constant time): another site can
make a browser send the cookie (a Basic-authenticated console would even be authenticated), but
it cannot read it to put it in the form.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

COOKIE = "cairn_csrf"
FIELD = "csrf"
HEADER = "X-CSRF-Token"
_TOKEN_BYTES = 32


def token_of(request: web.Request) -> str | None:
    """The session's token, from its cookie (None: a new session)."""
    token = request.cookies.get(COOKIE)
    return token if token and len(token) < 128 else None


def new_token() -> str:
    return secrets.token_urlsafe(_TOKEN_BYTES)


def set_cookie(response: web.StreamResponse, token: str, *, secure: bool) -> None:
    response.set_cookie(COOKIE, token, path="/ui", httponly=True, samesite="Strict", secure=secure)


async def check(request: web.Request) -> None:
    """Raise 403 unless the POST carries the session's token (form field or header)."""
    cookie = token_of(request)
    offered = request.headers.get(HEADER)
    if offered is None:
        form = await request.post()
        field = form.get(FIELD)
        offered = field if isinstance(field, str) else None
    if not cookie or not offered or not hmac.compare_digest(cookie.encode(), offered.encode()):
        raise web.HTTPForbidden(
            text="refused: this form was not sent by the console (missing or wrong CSRF "
            "token); reload the page and try again",
        )
