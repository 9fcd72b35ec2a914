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

from sdk._transport.server import DEFAULT_MAX_MESSAGE_BYTES, RunningEndpoint, start_server
from sdk.definitions import App, app

# ``app`` is here too because restate-sdk defines it in ``restate.endpoint``.
__all__ = ["RunningEndpoint", "app", "main", "serve", "start_server"]


async def _serve_until_signalled(
    app: App, host: str, port: int, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> None:
    endpoint = await start_server(app, host, port, max_message_bytes)
    print(
        f"cairn endpoint: serving {', '.join(app.services)} on {host}:{endpoint.port}", flush=True
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
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (blocking)."""
    asyncio.run(_serve_until_signalled(app, host, port, max_message_bytes))


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
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = load_app(args.app)
    try:
        serve(app, args.host, args.port, args.max_message_bytes)
    except OSError as exc:
        raise SystemExit(f"cairn endpoint: {exc}") from exc
