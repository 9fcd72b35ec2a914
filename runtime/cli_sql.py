"""``cairn sql "SELECT ..."``: a query to the admin API's ``POST /query``, printed as a plain
text table; ``--format json`` (or ``--json``): the rows as JSON, one object per row, for scripts;
``csv``; ``arrow``: the Arrow IPC stream, to ``--output FILE`` or a pipe."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from runtime.admin_client import add_admin_flags, admin_bytes, admin_request

_MEDIA_TYPES = {"csv": "text/csv", "arrow": "application/vnd.apache.arrow.stream"}

# A cell wider than this is cut (with "…") so that one long value keeps the table readable.
_CELL_WIDTH_MAX = 60


def add_sql_parser(commands: Any) -> None:
    """The ``sql`` subcommand (``commands``: the CLI's subparsers)."""
    sql = commands.add_parser("sql", help="query the introspection tables (README, SQL)")
    sql.add_argument("query", help='one SELECT, e.g. "SELECT id, status FROM sys_invocation"')
    sql.add_argument(
        "--format",
        choices=("table", "json", "csv", "arrow"),
        default="table",
        help="table (default), json (the rows), csv, or arrow (an Arrow IPC stream: needs "
        "--output or a pipe)",
    )
    sql.add_argument("--json", action="store_true", help="the same as --format json")
    sql.add_argument("--output", type=Path, help="write the answer to this file, not stdout")
    add_admin_flags(sql)


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    shown = value if isinstance(value, str) else json.dumps(value)
    return shown if len(shown) <= _CELL_WIDTH_MAX else shown[: _CELL_WIDTH_MAX - 1] + "…"


def render_table(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """Columns padded to their widest cell, a rule under the header, a row count at the end."""
    cells = [[_text(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


def run_sql(args: argparse.Namespace) -> None:
    form = "json" if args.json else args.format
    output: Path | None = args.output
    if form == "arrow" and output is None and sys.stdout.isatty():
        raise SystemExit("cairn: Arrow is binary: give --output FILE or pipe stdout")
    if form in _MEDIA_TYPES:
        body = admin_bytes(args, "POST", "/query", {"query": args.query}, _MEDIA_TYPES[form])
        if output is not None:
            _write(output, body)
        elif form == "csv":
            print(body.decode(), end="")
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(body)
            sys.stdout.buffer.flush()
        return
    answer = admin_request(args, "POST", "/query", {"query": args.query})
    if form == "json":
        text = json.dumps(answer["rows"], indent=2)
    else:
        text = render_table(answer["columns"], answer["rows"])
        if answer.get("truncated"):
            text += "\n(more rows were left off: --sql-result-rows-max on the node)"
    if output is not None:
        _write(output, (text + "\n").encode())
    else:
        print(text)


def _write(path: Path, body: bytes) -> None:
    try:
        path.write_bytes(body)
    except OSError as exc:
        raise SystemExit(f"cairn: cannot write {path}: {exc}") from exc


# The CLI's client-command interface (runtime/cli.py ``_CLIENT_COMMANDS``).
add_commands = add_sql_parser


def run(args: argparse.Namespace) -> bool:
    """Runs ``cairn sql``; ``False`` for any other command."""
    if args.command != "sql":
        return False
    run_sql(args)
    return True
