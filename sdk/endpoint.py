"""Running an app as an endpoint process: ``serve`` and ``python -m sdk module:app``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from sdk._transport.identity import parse_public_key
from sdk._transport.server import (
    DEFAULT_MAX_MESSAGE_BYTES,
    RunningEndpoint,
    TlsFiles,
    start_server,
)
from sdk.definitions import App, app
from sdk.event_loop import EVENT_LOOPS, loop_name, run

# ``app`` is here too because restate-sdk defines it in ``restate.endpoint``.
__all__ = ["RunningEndpoint", "TlsFiles", "app", "main", "serve", "start_server"]


async def _serve_until_signalled(
    app: App,
    host: str,
    port: int,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    identity_keys: Sequence[str] = (),
    tls: TlsFiles | None = None,
    event_loop: str = "auto",
    message_batches: bool = True,
    multiplex: bool = True,
) -> None:
    endpoint = await start_server(
        app,
        host,
        port,
        max_message_bytes,
        identity_keys=identity_keys,
        tls=tls,
        message_batches=message_batches,
        multiplex=multiplex,
    )
    print(
        f"cairn endpoint: serving {', '.join(app.services)} on {host}:{endpoint.port} "
        f"(event loop {loop_name(event_loop)})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await endpoint.stop()


def serve(
    app: App,
    host: str = "127.0.0.1",
    port: int = 9080,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    *,
    identity_keys: Sequence[str] = (),
    tls: TlsFiles | None = None,
    event_loop: str = "auto",
    message_batches: bool = True,
    multiplex: bool = True,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (blocking).

    ``identity_keys``: serve only calls signed by one of these runtime keys (``publickeyv1_...``;
    added to the app's own). ``tls``: serve gRPC over TLS. ``event_loop``: ``auto`` (uvloop when
    installed), ``uvloop`` or ``asyncio``. ``message_batches=False``: never send or accept
    batched stream messages (as endpoints before them). ``multiplex=False``: one gRPC call per
    attempt, never many attempts on one stream (as endpoints before it).
    """
    for key in identity_keys:
        parse_public_key(key)
    run(
        _serve_until_signalled(
            app,
            host,
            port,
            max_message_bytes,
            identity_keys,
            tls,
            event_loop,
            message_batches,
            multiplex,
        ),
        event_loop,
    )


def load_app(target: str) -> App:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"cairn: expected module:attribute, got {target!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"cairn: cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise SystemExit(f"cairn: {target!r} is not an app made by sdk.app(...)")
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sdk", description="Serve a Cairn SDK app.")
    parser.add_argument("app", help="module:attribute of the app, e.g. examples.demo:app")
    parser.add_argument("--host", default=os.environ.get("CAIRN_ENDPOINT_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("CAIRN_ENDPOINT_PORT", "9080"))
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=int(os.environ.get("CAIRN_MAX_MESSAGE_BYTES", str(DEFAULT_MAX_MESSAGE_BYTES))),
        help="largest gRPC message either way; match the node's size policy",
    )
    parser.add_argument(
        "--identity-key",
        action="append",
        default=[k for k in os.environ.get("CAIRN_IDENTITY_KEYS", "").split(",") if k.strip()],
        metavar="publickeyv1_...",
        help="serve only calls signed by this runtime key (repeatable; env CAIRN_IDENTITY_KEYS, "
        "comma-separated)",
    )
    parser.add_argument("--tls-cert-file", default=os.environ.get("CAIRN_ENDPOINT_TLS_CERT_FILE"))
    parser.add_argument("--tls-key-file", default=os.environ.get("CAIRN_ENDPOINT_TLS_KEY_FILE"))
    parser.add_argument(
        "--tls-client-ca-file",
        default=os.environ.get("CAIRN_ENDPOINT_TLS_CLIENT_CA_FILE"),
        help="require client certificates signed by this CA (mutual TLS)",
    )
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default=os.environ.get("CAIRN_EVENT_LOOP", "auto"),
        help="auto (default: uvloop when installed), uvloop or asyncio; env CAIRN_EVENT_LOOP",
    )
    parser.add_argument(
        "--no-message-batches",
        action="store_true",
        default=os.environ.get("CAIRN_MESSAGE_BATCHES", "1") == "0",
        help="one protocol message per gRPC message both ways, as endpoints before batches "
        "(env CAIRN_MESSAGE_BATCHES=0)",
    )
    parser.add_argument(
        "--no-multiplex",
        action="store_true",
        default=os.environ.get("CAIRN_MULTIPLEX", "1") == "0",
        help="one gRPC call per attempt, never many attempts on one stream, as endpoints before "
        "it (env CAIRN_MULTIPLEX=0)",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    if args.event_loop not in EVENT_LOOPS:  # (CAIRN_EVENT_LOOP skips argparse's choices)
        raise SystemExit(
            f"cairn endpoint: --event-loop must be one of {', '.join(EVENT_LOOPS)}, "
            f"got {args.event_loop!r}"
        )
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = load_app(args.app)
    try:
        for key in args.identity_key:
            parse_public_key(key.strip())
        tls = None
        if args.tls_cert_file or args.tls_key_file:
            if not (args.tls_cert_file and args.tls_key_file):
                raise ValueError("--tls-cert-file and --tls-key-file go together")
            tls = TlsFiles(args.tls_cert_file, args.tls_key_file, args.tls_client_ca_file)
        serve(
            app,
            args.host,
            args.port,
            args.max_message_bytes,
            identity_keys=[k.strip() for k in args.identity_key],
            tls=tls,
            event_loop=args.event_loop,
            message_batches=not args.no_message_batches,
            multiplex=not args.no_multiplex,
        )
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cairn endpoint: {exc}") from exc
