"""The CLI's client-side commands on services, deployments, invocations and state.

Each prints a table by default (rich) and the admin API's JSON with ``--json`` (for scripts).
``cairn server``/``dev`` stay in ``runtime.cli``; this module only talks to the admin API.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from runtime import cli_state
from runtime.admin_client import add_admin_flags, admin_exchange, admin_request
from runtime.cli_bulk import DONE, add_bulk_flags, manage_many
from runtime.versions import cli as versions_cli

# The admin API's page size bound (runtime/admin/listing.py MAX_LIMIT is larger; a page this
# size keeps each request short).
_PAGE = 1000


def _console() -> Console:
    console = Console()
    if not console.is_terminal:
        # Piped output: no wrapping at 80 columns, so ids and targets stay whole on their line.
        console = Console(width=400)
    return console


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the admin API's JSON")
    add_admin_flags(parser)


def add_commands(commands: Any) -> None:
    """Adds ``services``, ``deployments``, ``invocations`` and ``state`` to the CLI's parser."""
    services = commands.add_parser("services", help="registered services")
    service_commands = services.add_subparsers(dest="action", required=True)
    _client_flags(service_commands.add_parser("list", help="list services"))
    describe = service_commands.add_parser("describe", help="a service and its handlers")
    describe.add_argument("service")
    _client_flags(describe)

    deployments = commands.add_parser("deployments", help="manage deployments")
    deployment_commands = deployments.add_subparsers(dest="action", required=True)
    register = deployment_commands.add_parser("register", help="register an SDK endpoint")
    register.add_argument("uri", help="the endpoint, e.g. http://127.0.0.1:9080")
    register.add_argument(
        "--force",
        action="store_true",
        help="replace a deployment at the same URI whose services changed (else 409); with "
        "--check, switch traffic even when the check finds mismatches",
    )
    register.add_argument(
        "--check",
        action="store_true",
        help="first replay the unfinished invocations of its services against it; refuse on a "
        "mismatch (README, Versions)",
    )
    _client_flags(register)
    _client_flags(deployment_commands.add_parser("list", help="list deployments"))

    invocations = commands.add_parser("invocations", help="inspect and manage invocations")
    invocation_commands = invocations.add_subparsers(dest="action", required=True)
    listing = invocation_commands.add_parser("list", help="list invocations")
    _filter_flags(listing)
    listing.add_argument("--limit", type=int, help="print at most this many (default: all)")
    _client_flags(listing)
    describe = invocation_commands.add_parser(
        "describe", help="status, target, last failure and journal"
    )
    describe.add_argument("id", help="the invocation id (inv_...)")
    _client_flags(describe)
    for action, text in (
        ("cancel", "cancel: the handler sees a TerminalError at its next await"),
        ("kill", "kill now: no compensation, the object's lock is released"),
        ("purge", "forget a completed invocation"),
    ):
        command = invocation_commands.add_parser(
            action, help=f"{text}; without an id, every invocation the filters match"
        )
        command.add_argument("id", nargs="?", help="the invocation id (inv_...)")
        _filter_flags(command)
        command.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        add_bulk_flags(command)
        _client_flags(command)

    # describe, remove, drain, check and move (deployments); move (invocations): Versions.
    versions_cli.add_commands(deployment_commands, invocation_commands)

    state = commands.add_parser("state", help="state of virtual objects and workflows")
    state_commands = state.add_subparsers(dest="action", required=True)
    cli_state.add_commands(state_commands, _client_flags)


def _filter_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", help="only this status (invoked, suspended, completed...)")
    parser.add_argument("--service", help="only invocations of this service")


def run(args: argparse.Namespace) -> bool:
    """Runs the command if it is one of this module's; ``False`` if it is not."""
    if args.command == "services":
        _services(args)
    elif args.command == "deployments" and args.action in versions_cli.DEPLOYMENT_ACTIONS:
        versions_cli.run_deployments(args)
    elif args.command == "deployments":
        _deployments(args)
    elif args.command == "invocations" and args.action == "move":
        versions_cli.run_invocation_move(args)
    elif args.command == "invocations":
        _invocations(args)
    elif args.command == "state":
        cli_state.run(args)
    else:
        return False
    return True


# ---------------------------------------------------------------- services and deployments


def _services(args: argparse.Namespace) -> None:
    if args.action == "list":
        services = admin_request(args, "GET", "/services")["services"]
        if args.json:
            return _print_json(services)
        table = Table("NAME", "TYPE", "REVISION", "DEPLOYMENT", "HANDLERS")
        for s in services:
            handlers = ", ".join(h["name"] for h in s["handlers"])
            table.add_row(s["name"], s["ty"], str(s["revision"]), s["deployment_id"], handlers)
        _console().print(table)
        return None
    quoted = urllib.parse.quote(args.service, safe="")
    service = admin_request(args, "GET", f"/services/{quoted}")
    if args.json:
        return _print_json(service)
    console = _console()
    console.print(
        f"[bold]{service['name']}[/bold] ({service['ty']}), revision "
        f"{service['revision']}, deployment {service['deployment_id']}"
    )
    if service.get("documentation"):
        console.print(service["documentation"])
    table = Table("HANDLER", "KIND", "INPUT", "OUTPUT")
    for h in service["handlers"]:
        table.add_row(h["name"], str(h["kind"] or ""), _short(h["input"]), _short(h["output"]))
    console.print(table)
    return None


def _deployments(args: argparse.Namespace) -> None:
    if args.action == "register":
        body = {"uri": args.uri, "force": args.force, "check": args.check}
        result = admin_request(args, "POST", "/deployments", body)
        if args.json:
            return _print_json(result)
        services = ", ".join(f"{s['name']} (revision {s['revision']})" for s in result["services"])
        print(f"registered {result['id']} at {result['uri']}: {services}")
    elif args.action == "list":
        deployments = admin_request(args, "GET", "/deployments")["deployments"]
        if args.json:
            return _print_json(deployments)
        table = Table("ID", "URI", "SERVICES", "PINNED")
        for d in deployments:
            services = ", ".join(s["name"] for s in d["services"])
            table.add_row(d["id"], d["uri"], services, str(d["pinned_invocations"]))
        _console().print(table)
    return None


# ---------------------------------------------------------------- invocations


def _matching(args: argparse.Namespace, limit: int | None) -> Iterator[dict[str, Any]]:
    """Rows the filters match, following the pages (``next``) until ``limit`` rows."""
    yielded = 0
    cursor: str | None = None
    while limit is None or yielded < limit:
        query = {"limit": str(_PAGE)}
        if args.status:
            query["status"] = args.status
        if cursor is not None:
            query["cursor"] = cursor
        page = admin_request(args, "GET", "/invocations?" + urllib.parse.urlencode(query))
        for row in page["invocations"]:
            # The admin listing filters by status only; the service is the target's first part.
            if args.service and row["target"].split("/", 1)[0] != args.service:
                continue
            yield row
            yielded += 1
            if limit is not None and yielded >= limit:
                return
        if (cursor := page["next"]) is None:
            return


def _invocations(args: argparse.Namespace) -> None:
    if args.action == "list":
        rows = list(_matching(args, args.limit))
        if args.json:
            return _print_json(rows)
        table = Table("ID", "STATUS", "TARGET", "ATTEMPT", "MODIFIED")
        for row in rows:
            table.add_row(
                row["id"],
                row["status"],
                row["target"],
                str(row["attempt"]),
                _time(row["modified_ms"]),
            )
        _console().print(table)
    elif args.action == "describe":
        _describe(args)
    elif args.id is not None:
        if args.status or args.service or args.where or args.limit is not None:
            raise SystemExit(
                "cairn: give an invocation id or filters (--where, --status, --service, "
                "--limit), not both"
            )
        _manage_one(args)
    else:
        manage_many(args)
    return None


def _describe(args: argparse.Namespace) -> None:
    body = admin_request(args, "GET", f"/invocations/{urllib.parse.quote(args.id, safe='')}")
    if args.json:
        return _print_json(body)
    console = _console()
    summary = Table(show_header=False, box=None)
    for name in ("id", "target", "status", "attempt", "idempotency_key", "attached_requests"):
        summary.add_row(name, str(body.get(name)))
    summary.add_row("created", _time(body["created_ms"]))
    summary.add_row("modified", _time(body["modified_ms"]))
    if body.get("last_failure"):
        summary.add_row("last failure", json.dumps(body["last_failure"]))
    if body.get("result") is not None:
        summary.add_row("result", json.dumps(body["result"]))
    console.print(summary)
    journal = Table("#", "COMMAND", "COMPLETED", "COMPLETION", title="journal")
    for entry in body["journal"]:
        completion = "" if entry["completion"] is None else json.dumps(entry["completion"])
        journal.add_row(
            str(entry["index"]),
            entry["command"],
            "yes" if entry["completed"] else "no",
            completion,
        )
    console.print(journal)
    return None


def _manage_path(args: argparse.Namespace, invocation_id: str) -> str:
    return f"/invocations/{urllib.parse.quote(invocation_id, safe='')}/{args.action}"


def _manage_one(args: argparse.Namespace) -> None:
    status, _ = admin_exchange(args, "PATCH", _manage_path(args, args.id))
    # 202: a running invocation; the cancel is delivered and seen at the handler's next await.
    outcome = "cancel requested" if status == 202 else DONE[args.action]
    if args.json:
        return _print_json({"id": args.id, "outcome": outcome})
    print(f"cancel requested for {args.id}" if status == 202 else f"{outcome} {args.id}")
    return None


def _time(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _short(value: Any) -> str:
    return "" if value is None else json.dumps(value)
