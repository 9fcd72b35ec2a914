"""Secret request headers (README, Security): passed to the handler, never stored in clear.

Headers named in the deny-list (``NodeConfig.secret_headers``) are sealed where they enter (the
ingress, a handler's call or send): their value is encrypted (Fernet: AES-128-CBC + HMAC-SHA256)
with the node's header key, so the log, the journal and every admin view hold only ciphertext.
The invoker unseals them on the way to the endpoint, so the handler sees the value on every
attempt, replays included. Admin views show them as ``<redacted>``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import msgspec
from cryptography.fernet import Fernet, InvalidToken

from partition_processor import journal as j
from runtime.security.errors import SecuritySetupError

log = logging.getLogger(__name__)

SEALED_PREFIX = "cairn-sealed-v1:"
REDACTED = "<redacted>"
DEFAULT_SECRET_HEADERS = ("authorization", "cookie", "proxy-authorization", "x-api-key")

Headers = list[tuple[str, str]]


def load_or_create_key(path: Path) -> bytes:
    """The header key in ``path``; a missing file gets a new random key (mode 0600)."""
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        key = Fernet.generate_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key + b"\n")
        return key
    except OSError as exc:
        raise SecuritySetupError(f"cannot read the header key file {str(path)!r}: {exc}") from exc
    try:
        Fernet(key)
    except ValueError as exc:
        raise SecuritySetupError(
            f"{str(path)!r} is not a header key (32 url-safe base64 bytes, as "
            "`cairn keys generate` writes)"
        ) from exc
    return key


class HeaderSeal:
    """Seals, unseals and redacts the deny-listed headers."""

    def __init__(self, secret_names: Iterable[str], key: bytes) -> None:
        self.secret_names = frozenset(name.strip().lower() for name in secret_names)
        self._fernet = Fernet(key)

    def is_secret(self, name: str) -> bool:
        return name.lower() in self.secret_names

    def seal(self, headers: Sequence[tuple[str, str]]) -> Headers:
        """Encrypt the secret headers' values (already sealed ones are sealed again: a client
        cannot smuggle in another invocation's ciphertext to have it decrypted)."""
        return [
            (name, SEALED_PREFIX + self._fernet.encrypt(value.encode()).decode())
            if self.is_secret(name)
            else (name, value)
            for name, value in headers
        ]

    def unseal(self, headers: Sequence[tuple[str, str]]) -> Headers:
        """The headers as the handler sees them. A secret header this key cannot open (sealed by
        a node with another key) is left out, with a warning that names it, never its value."""
        opened: Headers = []
        for name, value in headers:
            if not self.is_secret(name) or not value.startswith(SEALED_PREFIX):
                opened.append((name, value))
                continue
            try:
                opened.append((name, self._fernet.decrypt(value[len(SEALED_PREFIX) :]).decode()))
            except (InvalidToken, UnicodeDecodeError):
                log.warning("header %r cannot be unsealed with this node's header key", name)
        return opened

    def redact(self, headers: Sequence[tuple[str, str]]) -> Headers:
        return [(n, REDACTED if self.is_secret(n) else v) for n, v in headers]

    def seal_command(self, command: j.JournalCommand) -> j.JournalCommand:
        """A handler's call or send with its secret headers sealed (other commands unchanged)."""
        if isinstance(command, j.Call | j.OneWayCall) and any(
            self.is_secret(n) for n, _ in command.headers
        ):
            return _with_headers(command, self.seal(command.headers))
        return command

    def unseal_entry(self, entry: j.JournalEntry) -> j.JournalEntry:
        """A journal entry as it is replayed to the endpoint (secret headers in clear)."""
        command = entry.command
        if isinstance(command, j.Input | j.Call | j.OneWayCall) and any(
            self.is_secret(n) for n, _ in command.headers
        ):
            unsealed = _with_headers(command, self.unseal(command.headers))
            return msgspec.structs.replace(entry, command=unsealed)
        return entry


C = TypeVar("C", bound=j.Input | j.Call | j.OneWayCall)


def _with_headers(command: C, headers: Headers) -> C:
    return msgspec.structs.replace(command, headers=headers)
