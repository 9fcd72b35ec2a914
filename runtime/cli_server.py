"""Running a node from the command line: ``cairn server`` and ``cairn dev`` until SIGTERM/SIGINT,
with a bounded graceful stop (``--shutdown-timeout``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

import msgspec

from runtime.cli_flags import _config
from runtime.config import NodeConfig
from runtime.log import LogError
from runtime.node import Node
from runtime.security.errors import SecuritySetupError
from runtime.workers import prepare_workers, run_workers
from sdk.event_loop import loop_name, run


def _scheme(config: NodeConfig) -> str:
    return "https" if config.tls_cert_file else "http"


SHUTDOWN_OVERRUN_EXIT_CODE = 1


def _exit_now(timeout_s: float) -> None:
    print(
        f"cairn: the node did not stop within {timeout_s:g} s (--shutdown-timeout); exiting "
        "anyway: everything acknowledged is already durable",
        file=sys.stderr,
        flush=True,
    )
    logging.shutdown()
    os._exit(SHUTDOWN_OVERRUN_EXIT_CODE)


def _on_stop_signal(node: Node, stop: asyncio.Event) -> None:
    """First SIGTERM/SIGINT: stop gracefully, and make sure the process is gone in time even if
    the event loop is stuck (a watchdog thread, not a task)."""
    if stop.is_set():
        return
    stop.set()
    timeout_s = node.config.shutdown_timeout_ms / 1000
    watchdog = threading.Timer(timeout_s, _exit_now, args=(timeout_s,))
    watchdog.daemon = True  # does not keep a process that stopped in time alive
    watchdog.start()


async def _stop_bounded(node: Node) -> None:
    timeout_s = node.config.shutdown_timeout_ms / 1000
    try:
        await asyncio.wait_for(node.stop(), timeout_s)
    except TimeoutError:
        _exit_now(timeout_s)


def _install_stop_signals(node: Node) -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_stop_signal, node, stop)
    return stop


async def _start_unless_stopped(node: Node, stop: asyncio.Event) -> bool:
    """Start the node; False if a stop signal came first (a start may wait for a long time,
    e.g. for a partition whose claim keeps failing: a signal cuts it short)."""
    starting = asyncio.ensure_future(node.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not starting.done():
            starting.cancel()
        await asyncio.gather(starting, stopping, return_exceptions=True)
    if starting.cancelled():
        return False
    starting.result()  # raises a startup failure
    return True


async def _run_until_signalled(node: Node, on_ready: Callable[[], None] | None = None) -> None:
    stop = _install_stop_signals(node)
    try:
        if not await _start_unless_stopped(node, stop):
            return
        print(
            f"cairn: node ready (ingress {_scheme(node.config)}://{node.config.ingress_bind}, "
            f"admin {_scheme(node.config)}://{node.config.admin_bind}, "
            f"event loop {loop_name(node.config.event_loop)})",
            flush=True,
        )
        if on_ready is not None:
            on_ready()
        await stop.wait()
    finally:
        await _stop_bounded(node)


def serve_node(config: NodeConfig, *, on_ready: Callable[[], None] | None = None) -> None:
    """Run one node until SIGTERM/SIGINT: ``cairn server``, and each worker of ``--workers``."""
    try:
        run(_run_until_signalled(Node(config), on_ready), config.event_loop)
    except SecuritySetupError as exc:
        raise SystemExit(f"cairn: {exc}") from exc
    except (LogError, OSError) as exc:
        # Startup failures (broker unreachable, port taken, data dir locked by another node)
        # are the operator's to fix: say what failed, without a traceback.
        raise SystemExit(f"cairn: the node stopped: {exc}") from exc


def _server(args: argparse.Namespace) -> None:
    config = _config(args)
    if args.workers < 1:
        raise SystemExit("cairn: --workers must be at least 1")
    try:
        config = prepare_workers(msgspec.structs.replace(config, workers=args.workers))
    except ValueError as exc:
        raise SystemExit(f"cairn: {exc}") from exc
    if config.workers > 1:
        sys.exit(run_workers(config, log_level=args.log_level))
    serve_node(config)


async def _dev(args: argparse.Namespace) -> None:
    import sdk.endpoint

    app = sdk.endpoint.load_app(args.app)
    node = Node(_config(args))
    server = await sdk.start_server(
        app,
        host="127.0.0.1",
        port=args.endpoint_port,
        max_message_bytes=node.limits.message_bytes,
    )
    uri = f"http://127.0.0.1:{server.port}"

    async def stop_endpoint() -> None:
        await server.stop()

    stop = _install_stop_signals(node)
    try:
        if not await _start_unless_stopped(node, stop):
            return
        await node.registry.register(await node.discover(uri))
        names = ", ".join(s.name for s in node.registry.services())
        print(
            f"cairn dev: serving {names} from {uri}; ingress http://{args.ingress_bind}, "
            f"admin http://{args.admin_bind}. Ctrl-C stops.",
            flush=True,
        )
        await stop.wait()
    finally:
        # The node first: it ends its streams to the endpoint, which then stops at once.
        await _stop_bounded(node)
        await stop_endpoint()
