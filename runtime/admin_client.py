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
    admin: str = args.admin
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"} if data is not None else {}
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
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        if not raise_errors:
            try:
                return exc.code, json.loads(detail)
            except ValueError:
                return exc.code, detail
        hint = ""
        if exc.code == 401:
            hint = " (give the admin token with --admin-token or CAIRN_ADMIN_TOKEN)"
        raise SystemExit(f"cairn: {method} {path} failed with {exc.code}: {detail}{hint}") from exc
    except urllib.error.URLError as exc:
        raise SystemExit(f"cairn: cannot reach the admin API at {admin}: {exc.reason}") from exc
