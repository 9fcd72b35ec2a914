"""The security flags of ``cairn server``/``cairn dev`` (README, Security): each is also an
environment variable ``CAIRN_<FLAG>``, with its default in ``NodeConfig``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from runtime.config import config_default

_FILES = {
    "admin_token_file": "bearer tokens of the admin API, one per line (several: rotation)",
    "ingress_token_file": "bearer tokens of the ingress, one per line (several: rotation)",
    "tls_cert_file": "serve the ingress and admin over TLS with this certificate (PEM)",
    "tls_key_file": "... and this private key (PEM)",
    "deployment_ca_file": "CA bundle trusted for grpcs:// and https:// deployments",
    "deployment_client_cert_file": "client certificate presented to TLS deployments",
    "deployment_client_key_file": "... and its private key",
    "request_signing_key_file": "ed25519 private key signing every call to endpoints",
    "header_key_file": "key sealing secret headers (default: DATA_DIR/header.key)",
}


def _env(name: str) -> str | None:
    return os.environ.get(f"CAIRN_{name.upper()}")


def add_security_flags(parser: argparse.ArgumentParser) -> None:
    for name, text in _FILES.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            default=_env(name) or config_default(name),
            metavar="FILE",
            help=text,
        )
    default = config_default("secret_headers")
    assert isinstance(default, tuple)
    parser.add_argument(
        "--secret-headers",
        default=_env("secret_headers") or ",".join(default),
        metavar="NAMES",
        help="comma-separated request headers passed to handlers but stored only encrypted "
        "and shown redacted (default %(default)s; empty: none)",
    )


def security_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``NodeConfig`` fields of the security flags."""
    options: dict[str, Any] = {name: getattr(args, name) for name in _FILES}
    options["secret_headers"] = tuple(
        name.strip().lower() for name in args.secret_headers.split(",") if name.strip()
    )
    return options
