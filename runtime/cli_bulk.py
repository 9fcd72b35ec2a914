"""``cairn invocations cancel|kill|purge`` without an id: every invocation a filter matches
(README, CLI "Bulk actions").

The filter is SQL (``--where``, a condition over ``sys_invocation``; ``--status`` and
``--service`` are shorthands for two such conditions) run through the admin API's ``POST
/query``, which accepts one read-only SELECT only and gives its engine no file access: the
condition can select rows, nothing else. The matches are shown and confirmed, then the action
is applied to each with a few requests in flight, and every outcome is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from runtime.admin_client import admin_exchange

# Requests in flight at once: enough to hide each request's round trip, few enough that a bulk
# action does not crowd out the node's other clients.
IN_FLIGHT = 8
# Matches shown before the confirmation.
_SHOWN = 10
DONE = {"cancel": "cancelled", "kill": "killed", "purge": "purged"}
_KINDS = ("done", "already completed", "not found", "failed")
# Exit code of a refused confirmation (no terminal to ask on and no --yes): nothing was done.
EXIT_NOT_CONFIRMED = 2


def add_bulk_flags(parser: argparse.ArgumentParser) -> None:
    """``--where`` and ``--limit`` of a bulk ``cancel``, ``kill`` or ``purge``."""
    parser.add_argument(
        "--where",
        help="a SQL condition over sys_invocation, e.g. \"service = 'Sleeper' AND status = "
        "'suspended'\" (README, SQL introspection)",
    )
    parser.add_argument("--limit", type=int, help="act on at most this many (oldest first)")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _condition(args: argparse.Namespace) -> str:
    conditions: list[str] = []
    if args.where:
        # On its own lines: a trailing "--" comment in it cannot swallow the closing parenthesis.
        conditions.append(f"(\n{args.where}\n)")
    if args.status:
        conditions.append(f"status = {_literal(args.status)}")
    if args.service:
        conditions.append(f"service = {_literal(args.service)}")
    # Only completed invocations can be purged; cancel and kill would only be refused on them.
    conditions.append("status = 'completed'" if args.action == "purge" else "status <> 'completed'")
    return " AND ".join(conditions)


def select_matches(args: argparse.Namespace) -> tuple[list[dict[str, Any]], int]:
    """The invocations to act on (oldest first, at most ``--limit``) and how many matched."""
    query = (
        "SELECT id, status, target, count(*) OVER () AS matched FROM sys_invocation "
        f"WHERE {_condition(args)} ORDER BY created_ms, id"
    )
    if args.limit is not None:
        query += f" LIMIT {args.limit}"
    status, body = admin_exchange(args, "POST", "/query", {"query": query}, raise_errors=False)
    message = body.get("message") if isinstance(body, dict) else body
    if status == 400:
        raise SystemExit(f"cairn: the filter was refused by the node: {message}")
    if status != 200:
        raise SystemExit(f"cairn: POST /query failed with {status}: {message}")
    rows: list[dict[str, Any]] = body["rows"]
    if body.get("truncated"):
        print(
            f"cairn: only the first {len(rows)} matches are acted on (the node's "
            "--sql-result-rows-max); run the command again for the rest",
            file=sys.stderr,
        )
    return rows, rows[0]["matched"] if rows else 0


def _stderr() -> Console:
    console = Console(stderr=True)
    if not console.is_terminal:
        # Piped: no wrapping at 80 columns, so ids and targets stay whole on their line.
        console = Console(stderr=True, width=400)
    return console


def _confirm(args: argparse.Namespace, rows: list[dict[str, Any]], matched: int) -> None:
    """Show the matches; ask, unless ``--yes``. Ends the CLI (exit 2) when it cannot ask."""
    console = _stderr()
    if not args.json:
        shown = Table("ID", "STATUS", "TARGET", title=f"{matched} invocations match")
        for row in rows[:_SHOWN]:
            shown.add_row(row["id"], row["status"], row["target"])
        console.print(shown)
        if len(rows) > _SHOWN:
            console.print(f"... and {len(rows) - _SHOWN} more")
        if len(rows) < matched:
            console.print(f"{args.action} acts on the first {len(rows)} (--limit)")
    if args.yes:
        return
    if args.json or not sys.stdin.isatty():
        why = "--json" if args.json else "stdin is not a terminal"
        print(
            f"cairn: {args.action} {len(rows)} invocations? confirm with --yes ({why}); "
            "nothing done",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_NOT_CONFIRMED)
    answer = console.input(f"{args.action} {len(rows)} invocations. Proceed? [y/N] ", markup=False)
    if answer.strip().lower() not in ("y", "yes"):
        print("cairn: nothing done", file=sys.stderr)
        raise SystemExit(EXIT_NOT_CONFIRMED)


def _apply_one(args: argparse.Namespace, invocation_id: str) -> dict[str, Any]:
    path = f"/invocations/{urllib.parse.quote(invocation_id, safe='')}/{args.action}"
    try:
        status, body = admin_exchange(args, "PATCH", path, raise_errors=False)
    except SystemExit as exc:
        # admin_exchange ends the CLI when the node cannot be reached; here that is one
        # failed outcome among the others, reported with the rest.
        return {"id": invocation_id, "outcome": "failed", "error": str(exc.code)}
    if status == 202:  # reached a running invocation: seen at the handler's next await
        return {"id": invocation_id, "outcome": "cancel requested"}
    if status < 300:
        return {"id": invocation_id, "outcome": DONE[args.action]}
    if status == 404:
        return {"id": invocation_id, "outcome": "not found"}
    if status == 409 and args.action != "purge":  # completed since it was selected
        return {"id": invocation_id, "outcome": "already completed"}
    message = body.get("message") if isinstance(body, dict) else body
    return {"id": invocation_id, "outcome": "failed", "error": f"{status} {message}"}


def _apply(args: argparse.Namespace, ids: list[str]) -> Iterator[dict[str, Any]]:
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        futures: list[Future[dict[str, Any]]] = [
            pool.submit(_apply_one, args, invocation_id) for invocation_id in ids
        ]
        for done in as_completed(futures):
            yield done.result()


def kind_of(result: dict[str, Any]) -> str:
    """One of ``done``, ``already completed``, ``not found``, ``failed``."""
    outcome: str = result["outcome"]
    return outcome if outcome in _KINDS else "done"


def manage_many(args: argparse.Namespace) -> None:
    """Cancel, kill or purge every invocation the filters match, after a confirmation."""
    if not (args.where or args.status or args.service):
        raise SystemExit(
            f"cairn: {args.action} needs an invocation id or a filter (--where, --status, "
            "--service)"
        )
    if args.action == "purge" and args.status and args.status != "completed":
        raise SystemExit("cairn: only completed invocations can be purged (--status completed)")
    if args.limit is not None and args.limit < 1:
        raise SystemExit("cairn: --limit must be at least 1")
    rows, matched = select_matches(args)
    if not rows:
        print(f"no invocation matches; nothing to {args.action}", file=sys.stderr)
        if args.json:
            print("[]")
        return
    _confirm(args, rows, matched)
    order = {row["id"]: n for n, row in enumerate(rows)}
    results: list[dict[str, Any]] = []
    with Progress(console=_stderr(), disable=args.json) as progress:
        task = progress.add_task(args.action, total=len(rows))
        for result in _apply(args, list(order)):
            results.append(result)
            progress.advance(task)
    results.sort(key=lambda r: order[r["id"]])
    counts = {kind: 0 for kind in _KINDS}
    for result in results:
        counts[kind_of(result)] += 1
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if result["outcome"] == "failed":
                print(f"{result['id']}: {result['error']}", file=sys.stderr)
        print(
            f"{DONE[args.action]} {counts['done']} of {len(results)} invocations "
            f"(already completed: {counts['already completed']}, not found: "
            f"{counts['not found']}, failed: {counts['failed']})"
        )
    if counts["failed"]:
        raise SystemExit(1)
