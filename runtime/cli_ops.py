"""The CLI's ``snapshots``, ``subscriptions`` and ``keys`` commands: plain lines by default (one
per snapshot or subscription), the admin API's JSON with ``--json`` (for scripts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from runtime.admin_client import add_admin_flags, admin_request
from runtime.security.identity import generate_key_pair


def _flags(parser: argparse.ArgumentParser, *, admin: bool = True) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    if admin:
        add_admin_flags(parser)


def add_commands(commands: Any) -> None:
    """Adds ``snapshots``, ``subscriptions`` and ``keys`` to the CLI's parser."""
    snapshots = commands.add_parser("snapshots", help="partition snapshots")
    snapshot_commands = snapshots.add_subparsers(dest="action", required=True)
    create = snapshot_commands.add_parser(
        "create", help="snapshot one partition, or every partition the node leads, now"
    )
    create.add_argument("--partition", type=int, help="only this partition")
    _flags(create)
    listing = snapshot_commands.add_parser("list", help="list the repository's snapshots")
    listing.add_argument("--partition", type=int, help="only this partition")
    _flags(listing)

    subscriptions = commands.add_parser("subscriptions", help="manage Kafka subscriptions")
    subscription_commands = subscriptions.add_subparsers(dest="action", required=True)
    add = subscription_commands.add_parser("add", help="feed a Kafka topic to a handler")
    add.add_argument("source", help="kafka://CLUSTER/TOPIC")
    add.add_argument("sink", help="service://SERVICE/HANDLER")
    add.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="K=V",
        help="e.g. auto.offset.reset=earliest",
    )
    _flags(add)
    _flags(subscription_commands.add_parser("list", help="list subscriptions"))
    remove = subscription_commands.add_parser("remove", help="delete a subscription")
    remove.add_argument("id", help="the subscription id (sub_...)")
    _flags(remove)

    keys = commands.add_parser("keys", help="request-signing keys")
    key_commands = keys.add_subparsers(dest="action", required=True)
    generate = key_commands.add_parser(
        "generate", help="write an ed25519 key pair for --request-signing-key-file"
    )
    generate.add_argument(
        "--out", default="cairn-signing-key.pem", help="the private key file (PEM, mode 0600)"
    )
    _flags(generate, admin=False)


def run(args: argparse.Namespace) -> bool:
    """Runs the command if it is one of this module's; ``False`` if it is not."""
    if args.command == "snapshots":
        _snapshots(args)
    elif args.command == "subscriptions":
        _subscriptions(args)
    elif args.command == "keys":
        _generate_keys(args, Path(args.out))
    else:
        return False
    return True


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _snapshots(args: argparse.Namespace) -> None:
    if args.action == "create":
        body = {} if args.partition is None else {"partition": args.partition}
        rows = admin_request(args, "POST", "/snapshots", body)["snapshots"]
        if args.json:
            return _print_json(rows)
        for row in rows:
            print(f"partition {row['partition']}: {row['name']} (applied_lsn {row['applied_lsn']})")
        return None
    query = "" if args.partition is None else f"?partition={args.partition}"
    rows = admin_request(args, "GET", f"/snapshots{query}")["snapshots"]
    if args.json:
        return _print_json(rows)
    for row in rows:
        lsn, size = row["applied_lsn"], row["size"]
        print(f"{row['partition']:>5}  {lsn:>12}  {size:>10}  {row['name']}")
    return None


def _subscriptions(args: argparse.Namespace) -> None:
    if args.action == "add":
        options: dict[str, str] = {}
        for item in args.option:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SystemExit(f"cairn: --option expects K=V, got {item!r}")
            options[key] = value
        body = {"source": args.source, "sink": args.sink, "options": options}
        created = admin_request(args, "POST", "/subscriptions", body)
        if args.json:
            return _print_json(created)
        print(f"{created['id']}  {created['source']} -> {created['sink']}")
    elif args.action == "list":
        rows = admin_request(args, "GET", "/subscriptions")["subscriptions"]
        if args.json:
            return _print_json(rows)
        for row in rows:
            shown = " ".join(f"{k}={v}" for k, v in sorted(row["options"].items()))
            print(f"{row['id']}  {row['source']} -> {row['sink']}  {shown}")
    else:
        admin_request(args, "DELETE", f"/subscriptions/{args.id}")
        if args.json:
            return _print_json({"id": args.id, "removed": True})
        print(f"removed {args.id}")
    return None


def _generate_keys(args: argparse.Namespace, private: Path) -> None:
    """The private key to ``private``, the public key (``publickeyv1_...``) to ``private.pub``
    and stdout: give it to endpoints (``identity_keys=[...]``, ``--identity-key``)."""
    try:
        public = generate_key_pair(private)
        private.with_name(private.name + ".pub").write_text(public + "\n")
    except FileExistsError as exc:
        raise SystemExit(f"cairn: {private} exists; not overwriting a key") from exc
    except OSError as exc:
        raise SystemExit(f"cairn: cannot write {private}: {exc}") from exc
    if args.json:
        return _print_json({"private_key_file": str(private), "public_key": public})
    print(f"private key: {private} (keep it secret: --request-signing-key-file {private})")
    print(f"public key:  {public}")
    return None
