"""The state page's edit form: what it sends, read back into the whole new state of a key.

The form shows each entry's value as JSON text (editable), a delete box per entry, and one row to
add an entry; values that are not JSON are shown as base64 and kept as they are unless deleted.
It carries the state's version as read, so that an edit made on a state that changed meanwhile
is refused (``ObjectState.patch_state`` raises ``VersionMismatch``) rather than undoing the
other change.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# More entries than this in one form is not an edit a person makes in a browser.
MAX_ENTRIES = 1000


class EditError(ValueError):
    """The form cannot be turned into a new state (the reason is shown; nothing is sent)."""


@dataclass(frozen=True)
class Edit:
    service: str
    key: str
    version: str | None
    new_state: dict[str, bytes]


def shown_entries(state: Mapping[str, list[int]]) -> list[dict[str, Any]]:
    """The entries of a ``?format=bytes`` state read, as the form shows them: JSON text when
    the value is JSON, else base64 (kept unchanged)."""
    entries = []
    for name, raw in sorted(state.items()):
        value = bytes(raw)
        try:
            text = json.dumps(json.loads(value), indent=2, ensure_ascii=False, sort_keys=True)
            entries.append({"name": name, "json": text, "base64": None})
        except (ValueError, UnicodeDecodeError):
            entries.append({"name": name, "json": None, "base64": base64.b64encode(value).decode()})
    return entries


def _json_bytes(name: str, text: str) -> bytes:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise EditError(f"the value of {name!r} is not JSON: {exc}") from exc
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def parse_edit(form: Mapping[str, str]) -> Edit:
    """The new state a submitted form describes (``EditError``: why it cannot be sent)."""
    service, key = form.get("service", ""), form.get("key")
    if not service or key is None:
        raise EditError("the form names no service and key")
    raw_count = form.get("entries", "0")
    if not raw_count.isascii() or not raw_count.isdigit() or int(raw_count) > MAX_ENTRIES:
        raise EditError(f"bad entry count {raw_count!r}")
    new_state: dict[str, bytes] = {}
    for i in range(int(raw_count)):
        name = form.get(f"name_{i}")
        if name is None:
            raise EditError(f"entry {i} has no name")
        if form.get(f"delete_{i}"):
            continue
        raw = form.get(f"raw_{i}")
        if raw is not None:
            try:
                new_state[name] = base64.b64decode(raw, validate=True)
            except binascii.Error as exc:
                raise EditError(f"the kept value of {name!r} is damaged: {exc}") from exc
        else:
            new_state[name] = _json_bytes(name, form.get(f"value_{i}", ""))
    added, added_value = form.get("new_name", ""), form.get("new_value", "")
    if added:
        if added in new_state:
            raise EditError(f"{added!r} is already an entry: edit its value above")
        new_state[added] = _json_bytes(added, added_value)
    elif added_value.strip():
        raise EditError("the new value has no name")
    version = form.get("version") or None
    return Edit(service, key, version, new_state)
