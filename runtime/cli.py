"""The ``cairn`` command line: ``server``, ``dev``, ``deployments``, ``services``, ``snapshots``.

Every ``server`` flag can also be given as an environment variable ``CAIRN_<FLAG>`` (for example
``CAIRN_DATA_DIR``, ``CAIRN_LOG``, ``CAIRN_KAFKA_BOOTSTRAP``); a flag on the command line wins.
The flags are defined in ``runtime/cli_flags.py``, the node runner in ``runtime/cli_server.py``;
this module parses and dispatches.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, Protocol

from runtime import cli_admin, cli_ops, cli_sql
from runtime.cli_flags import _add_node_flags, _config, _env_or_default
from runtime.cli_server import _dev, _server
from runtime.log import LogError
from runtime.logs import LOG_FORMATS, configure_logging
from runtime.security.errors import SecuritySetupError
from sdk.event_loop import run

# ``_config`` (the server flags -> NodeConfig) is re-exported: tests build configs with
# ``cli._config(cli._parser().parse_args([...]))``.
__all__ = ["_config", "_parser", "main"]


class _ClientCommands(Protocol):
    def add_commands(self, commands: Any) -> None: ...
    def run(self, args: argparse.Namespace) -> bool: ...


# Modules of client-side commands (admin API calls), each adding its subcommands and running
# them: the hook for more (``cairn sql`` in runtime/cli_sql.py joins this tuple).
_CLIENT_COMMANDS: tuple[_ClientCommands, ...] = (cli_admin, cli_sql, cli_ops)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cairn", description="Durable execution for Python.")
    commands = parser.add_subparsers(dest="command", required=True)

    server = commands.add_parser("server", help="run a Cairn node")
    _add_node_flags(server, data_dir="cairn-data")
    server.add_argument(
        "--workers",
        type=int,
        default=_env_or_default("workers"),
        help="node processes on this machine, one cluster sharing the ports (≈ cores; "
        "--log kafka); each is <node-name>-<i> on <data-dir>/worker-<i> (default %(default)s)",
    )

    dev = commands.add_parser(
        "dev", help="run an embedded node, serve module:app and register it, in one process"
    )
    dev.add_argument("app", help="the SDK app to serve, as module:attribute")
    dev.add_argument("--endpoint-port", type=int, default=9080)
    _add_node_flags(dev, data_dir=".cairn/dev")

    for module in _CLIENT_COMMANDS:
        module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command in ("server", "dev"):
        if args.log_format not in LOG_FORMATS:  # (CAIRN_LOG_FORMAT skips argparse's choices)
            raise SystemExit(f"cairn: --log-format must be text or json, got {args.log_format!r}")
        configure_logging(args.log_level, args.log_format)
        if args.command == "server":
            _server(args)
        else:
            try:
                run(_dev(args), args.event_loop)
            except SecuritySetupError as exc:
                raise SystemExit(f"cairn: {exc}") from exc
            except (LogError, OSError) as exc:
                raise SystemExit(f"cairn: the node stopped: {exc}") from exc
    else:
        for module in _CLIENT_COMMANDS:
            if module.run(args):
                break


if __name__ == "__main__":
    main()
