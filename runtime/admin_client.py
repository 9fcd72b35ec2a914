"""The CLI's client of the admin API: its URL, token and TLS trust from flags or environment."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import urllib.error
import urllib.request
from typing import Any

DEFAULT_ADMIN_URL = "http://127.0.0.1:9070"


def add_admin_flags(parser: argparse.ArgumentParser) -> None:
    """``--admin`` (``CAIRN_ADMIN_URL``), ``--admin-token`` (``CAIRN_ADMIN_TOKEN``) and
    ``--admin-ca-file`` (``CAIRN_ADMIN_CA_FILE``, for an https admin URL with a private CA)."""
    parser.add_argument("--admin", default=os.environ.get("CAIRN_ADMIN_URL", DEFAULT_ADMIN_URL))
    parser.add_argument(
        "--admin-token",
        default=os.environ.get("CAIRN_ADMIN_TOKEN", ""),
        help="bearer token of the admin API (default: $CAIRN_ADMIN_TOKEN)",
    )
    parser.add_argument(
        "--admin-ca-file",
        default=os.environ.get("CAIRN_ADMIN_CA_FILE", ""),
        help="CA bundle to trust for an https:// admin URL (default: the system's)",
    )


def admin_request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    return admin_exchange(args, method, path, body)[1]


def admin_request_status(args: argparse.Namespace, method: str, path: str) -> int:
    return admin_exchange(args, method, path)[0]


def admin_exchange(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: Any = None,
    *,
    raise_errors: bool = True,
) -> tuple[int, Any]:
    """``(status, decoded JSON body or None)``; an error status ends the CLI with its message,
    unless ``raise_errors`` is false (bulk commands report each failure and go on): then the
    error's status and body (JSON if it is JSON, else its text)."""
    try:
        status, raw = _send(args, method, path, body, None)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        if not raise_errors:
            try:
                return exc.code, json.loads(detail)
            except ValueError:
                return exc.code, detail
        raise _failed(args, method, path, exc.code, detail) from exc
    return status, json.loads(raw or b"null")


def admin_bytes(args: argparse.Namespace, method: str, path: str, body: Any, accept: str) -> bytes:
    """The answer's body as it came (CSV, an Arrow stream); an error status ends the CLI."""
    try:
        return _send(args, method, path, body, accept)[1]
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise _failed(args, method, path, exc.code, detail) from exc


def _failed(args: argparse.Namespace, method: str, path: str, code: int, detail: str) -> SystemExit:
    hint = ""
    if code == 401:
        hint = " (give the admin token with --admin-token or CAIRN_ADMIN_TOKEN)"
    return SystemExit(f"cairn: {method} {path} failed with {code}: {detail}{hint}")


def _send(
    args: argparse.Namespace, method: str, path: str, body: Any, accept: str | None
) -> tuple[int, bytes]:
    """One request: ``(status, body)``; an error status raises ``HTTPError``, an unreachable
    admin API ends the CLI."""
    admin: str = args.admin
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"} if data is not None else {}
    if accept is not None:
        headers["accept"] = accept
    if args.admin_token:
        headers["authorization"] = f"Bearer {args.admin_token}"
    request = urllib.request.Request(
        admin.rstrip("/") + path, data=data, method=method, headers=headers
    )
    context = None
    if admin.startswith("https://"):
        context = ssl.create_default_context(cafile=args.admin_ca_file or None)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError as exc:
        raise SystemExit(f"cairn: cannot reach the admin API at {admin}: {exc.reason}") from exc
