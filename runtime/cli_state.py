"""``cairn state get|edit SERVICE KEY``: read and edit a virtual object's or workflow's state.

``edit`` reads the state with its version, lets the operator change it (in ``$EDITOR``, or with
``--set`` / ``--delete`` / ``--from-file``), and posts the whole new state with the version it
read: the node applies it through the log, after the key's running invocations, and refuses it
(409) if the state changed in between.

The document edited is a JSON object: each value as JSON where the stored bytes are UTF-8 JSON,
else as ``{"$bytes": "<base64>"}``. A value left as it was is sent back as its original bytes
(not re-encoded), so an edit of one entry changes only that entry.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import shlex
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from runtime.admin_client import admin_exchange, admin_request

_BYTES = "$bytes"
_HEADER = (
    'the state of {target} (version {version}); values are JSON, or {{"$bytes": base64}}.\n'
    "Save to replace the whole state (a name removed is deleted); leave it unchanged to cancel."
)


def add_commands(
    state_commands: Any, client_flags: Callable[[argparse.ArgumentParser], None]
) -> None:
    """``get`` and ``edit`` under ``cairn state``; ``client_flags`` adds ``--json`` and the
    admin flags (as every client command has)."""
    get = state_commands.add_parser("get", help="every state entry of SERVICE/KEY")
    get.add_argument("service")
    get.add_argument("key")
    client_flags(get)
    edit = state_commands.add_parser(
        "edit",
        help="edit the state of SERVICE/KEY in $EDITOR (or with --set/--delete/--from-file); "
        "applied through the log after the key's running invocations, refused if it changed",
    )
    edit.add_argument("service")
    edit.add_argument("key")
    edit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="set NAME to the JSON value (repeatable; no editor)",
    )
    edit.add_argument(
        "--delete",
        action="append",
        default=[],
        metavar="NAME",
        help="remove NAME (repeatable; no editor)",
    )
    edit.add_argument(
        "--from-file",
        metavar="PATH",
        help="the whole new state, a JSON object as the editor shows it (no editor)",
    )
    client_flags(edit)


def run(args: argparse.Namespace) -> None:
    if args.action == "get":
        _get(args)
    else:
        _edit(args)


def _path(args: argparse.Namespace) -> str:
    service = urllib.parse.quote(args.service, safe="")
    key = urllib.parse.quote(args.key, safe="")
    return f"/services/{service}/state/{key}"


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=400)


def _get(args: argparse.Namespace) -> None:
    body = admin_request(args, "GET", _path(args))
    if args.json:
        print(json.dumps(body["state"], indent=2))
        return
    table = Table("NAME", "VALUE", title=f"{args.service}/{args.key}")
    for name, value in sorted(body["state"].items()):
        table.add_row(name, json.dumps(value))
    _console().print(table)


# ---------------------------------------------------------------- the edited document


def shown(value: bytes) -> Any:
    """A stored value in the document: its JSON if it is UTF-8 JSON, else ``{"$bytes": b64}``."""
    try:
        return json.loads(value.decode())
    except (UnicodeDecodeError, ValueError):
        return {_BYTES: base64.b64encode(value).decode()}


def stored(name: str, value: Any, original: dict[str, bytes]) -> bytes:
    """The bytes of a document value: unchanged ones keep their original bytes."""
    if name in original and _canonical(shown(original[name])) == _canonical(value):
        return original[name]
    if isinstance(value, dict) and set(value) == {_BYTES}:
        try:
            return base64.b64decode(str(value[_BYTES]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SystemExit(f"cairn: {name}: {_BYTES} is not valid base64: {exc}") from exc
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _canonical(value: Any) -> str:
    # (Not ``==``: Python finds 1 == 1.0 == True, three different JSON values.)
    return json.dumps(value, sort_keys=True)


def _document_state(document: Any, original: dict[str, bytes], where: str) -> dict[str, bytes]:
    if not isinstance(document, dict):
        raise SystemExit(f"cairn: {where} must hold a JSON object (state name → value)")
    return {str(name): stored(str(name), value, original) for name, value in document.items()}


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"cairn: {where} is not valid JSON: {exc}") from exc


def _in_editor(document: dict[str, Any], header: str) -> str:
    """The document after the operator edited it in ``$VISUAL``/``$EDITOR`` (as git does)."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    with tempfile.TemporaryDirectory(prefix="cairn-state-") as directory:
        path = Path(directory) / "state.json"
        path.write_text(text)
        print(header, file=sys.stderr)
        done = subprocess.run([*shlex.split(editor), str(path)], check=False)
        if done.returncode != 0:
            raise SystemExit(
                f"cairn: the editor ({editor}) exited with {done.returncode}; nothing sent"
            )
        return path.read_text()


def _edit(args: argparse.Namespace) -> None:
    read = admin_request(args, "GET", _path(args) + "?format=bytes")
    version: str = read["version"]
    original = {name: bytes(value) for name, value in read["state"].items()}
    document = {name: shown(value) for name, value in original.items()}
    target = f"{args.service}/{args.key}"
    if args.from_file is not None:
        try:
            text = Path(args.from_file).read_text()
        except OSError as exc:
            raise SystemExit(f"cairn: cannot read {args.from_file}: {exc}") from exc
        document = _parse(text, args.from_file)
        if not isinstance(document, dict):
            raise SystemExit(f"cairn: {args.from_file} must hold a JSON object")
    for assignment in args.set:
        name, equals, value = assignment.partition("=")
        if not equals or not name:
            raise SystemExit(f"cairn: --set takes NAME=JSON, got {assignment!r}")
        document[name] = _parse(value, f"the value of --set {name}")
    for name in args.delete:
        if name not in document:
            raise SystemExit(f"cairn: --delete {name}: {target} has no state entry {name!r}")
        del document[name]
    if args.from_file is None and not args.set and not args.delete:
        edited = _in_editor(document, _HEADER.format(target=target, version=version))
        document = _parse(edited, "the edited state")
    new_state = _document_state(document, original, "the new state")
    if new_state == original:
        _report(args, changed=False, version=version, state=new_state)
        return
    body = {
        "object_key": args.key,
        "version": version,
        "new_state": {name: list(value) for name, value in new_state.items()},
    }
    service = urllib.parse.quote(args.service, safe="")
    status, answer = admin_exchange(
        args, "POST", f"/services/{service}/state", body, raise_errors=False
    )
    if status == 409:
        raise SystemExit(
            f"cairn: the state of {target} changed since it was read (version {version}); "
            "nothing was changed: read it again and redo the edit"
        )
    if status >= 300:
        message = answer.get("message") if isinstance(answer, dict) else answer
        raise SystemExit(f"cairn: the edit of {target} failed with {status}: {message}")
    _report(args, changed=True, version=answer["version"], state=new_state)


def _report(
    args: argparse.Namespace, *, changed: bool, version: str, state: dict[str, bytes]
) -> None:
    target = f"{args.service}/{args.key}"
    if args.json:
        result = {
            "service": args.service,
            "key": args.key,
            "changed": changed,
            "version": version,
            "state": {name: shown(value) for name, value in state.items()},
        }
        print(json.dumps(result, indent=2, ensure_ascii=False))
    elif changed:
        print(f"updated {target} (version {version})")
    else:
        print(f"no change to {target}; nothing sent")
