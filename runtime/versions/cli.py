"""``cairn deployments remove|drain|check|describe|move`` and ``cairn invocations move``
(README, Versions). The ``cairn`` parser calls ``add_commands`` and hands these actions here."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from runtime.admin_client import add_admin_flags, admin_request

DEPLOYMENT_ACTIONS = ("describe", "remove", "drain", "check", "move")
_BAR = 30


def add_commands(
    deployments: argparse._SubParsersAction,  # type: ignore[type-arg]
    invocations: argparse._SubParsersAction,  # type: ignore[type-arg]
) -> None:
    describe = deployments.add_parser("describe", help="a deployment and its pinned invocations")
    describe.add_argument("id", help="the deployment id (dp_...)")
    remove = deployments.add_parser(
        "remove", help="remove a deployment (refused while invocations are pinned to it)"
    )
    remove.add_argument("id", help="the deployment id (dp_...)")
    remove.add_argument(
        "--force",
        action="store_true",
        help="remove even with pinned invocations (they fail with 573, deployment gone)",
    )
    remove.add_argument("--json", action="store_true", help="print the admin API's JSON")
    drain = deployments.add_parser(
        "drain", help="wait until no invocation is pinned to a deployment, then remove it"
    )
    drain.add_argument("id", help="the deployment id (dp_...)")
    drain.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    drain.add_argument("--keep", action="store_true", help="only wait, do not remove it")
    check = deployments.add_parser(
        "check",
        help="replay the unfinished invocations of the services an endpoint serves against it",
    )
    check.add_argument("uri", help="the new endpoint, e.g. http://127.0.0.1:9081")
    move = deployments.add_parser(
        "move", help="move every invocation pinned to a deployment to another one"
    )
    move.add_argument("id", help="the deployment they are pinned to")
    move.add_argument("to", help="the deployment to move them to")
    move_one = invocations.add_parser(
        "move", help="run an invocation's next attempts on another deployment"
    )
    move_one.add_argument("id", help="the invocation id (inv_...)")
    move_one.add_argument("deployment", help="the deployment to move it to (dp_...)")
    for parser in (describe, remove, drain, check, move, move_one):
        add_admin_flags(parser)


def run_deployments(args: argparse.Namespace) -> None:
    match args.action:
        case "describe":
            print(json.dumps(admin_request(args, "GET", f"/deployments/{args.id}"), indent=2))
        case "remove":
            force = "true" if args.force else "false"
            removed = admin_request(args, "DELETE", f"/deployments/{args.id}?force={force}")
            if args.json:
                print(json.dumps(removed, indent=2))
                return
            failed = removed["failed_invocations"]
            note = f" ({failed} pinned invocation{'s' if failed != 1 else ''} failed)"
            print(f"removed {args.id}{note if failed else ''}")
        case "drain":
            _drain(args)
        case "check":
            report = admin_request(args, "POST", "/deployments", {"uri": args.uri, "dry_run": True})
            print_check(report)
            if not report["compatible"]:
                raise SystemExit(1)
        case "move":
            body = {"deployment": args.to}
            moved = admin_request(args, "PATCH", f"/deployments/{args.id}/invocations", body)
            print(f"moved {len(moved['moved'])} invocation(s) to {args.to}")


def run_invocation_move(args: argparse.Namespace) -> None:
    body = {"deployment": args.deployment}
    admin_request(args, "PATCH", f"/invocations/{args.id}", body)
    print(f"moved {args.id} to {args.deployment}")


def print_check(report: dict[str, Any]) -> None:
    """One line per handler, then each mismatch."""
    for handler in report["handlers"]:
        bad = len(handler["mismatches"])
        print(f"{handler['handler']}: {handler['clean']} clean, {bad} mismatch")
        for m in handler["mismatches"]:
            if m["entry_index"] is None:
                print(f"  {m['invocation_id']}: {m['message']}")
            else:
                print(
                    f"  {m['invocation_id']} entry {m['entry_index']}: "
                    f"expected {m['expected']}, got {m['actual']}"
                )
    print("compatible" if report["compatible"] else "NOT compatible")


def _drain(args: argparse.Namespace) -> None:
    """Poll the pinned count, with a progress bar on stderr, until it reaches zero."""
    first: int | None = None
    while True:
        pinned: int = admin_request(args, "GET", f"/deployments/{args.id}")["pinned_invocations"]
        first = pinned if first is None else max(first, pinned)
        done = _BAR if first == 0 else _BAR * (first - pinned) // first
        sys.stderr.write(f"\r{args.id} [{'#' * done}{'.' * (_BAR - done)}] {pinned} pinned  ")
        sys.stderr.flush()
        if pinned == 0:
            sys.stderr.write("\n")
            break
        time.sleep(args.interval)
    if args.keep:
        print(f"drained {args.id}")
        return
    admin_request(args, "DELETE", f"/deployments/{args.id}")
    print(f"drained and removed {args.id}")
