"""Checks of the node-to-node settings, shared by the CLI (early, clear errors) and the node."""

from __future__ import annotations

import ipaddress
from pathlib import Path

# A secret shorter than this is refused: it would be guessable.
MIN_SECRET_BYTES = 16
_UNSPECIFIED = ("0.0.0.0", "::", "[::]", "")


def advertised_host(advertised_address: str, internal_bind_host: str) -> str:
    """The host peers are told (``--advertised-address``, else the internal bind's host).

    A wildcard address (``0.0.0.0``, ``::``) names no host: a peer told it would connect to
    itself. It is refused rather than guessed from the host name, which in containers and on
    multi-homed hosts is often not the address the peers can reach.
    """
    host = advertised_address.strip() or internal_bind_host
    if host in _UNSPECIFIED or _is_unspecified_ip(host):
        if advertised_address.strip():
            raise ValueError(
                f"--advertised-address {advertised_address!r} is a wildcard, not an address "
                "peers can reach: give this node's host name or IP address"
            )
        raise ValueError(
            f"--internal-bind listens on the wildcard {internal_bind_host!r}: set "
            "--advertised-address to the host name or IP address peers reach this node at"
        )
    if any(c.isspace() for c in host) or "/" in host:
        raise ValueError(f"--advertised-address {host!r} is not a host name or IP address")
    return host


def _is_unspecified_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False  # a host name


def read_cluster_secret(path: str) -> bytes:
    """The cluster secret in file ``path`` (surrounding whitespace ignored)."""
    if not path:
        raise ValueError(
            "a cluster needs --cluster-secret-file (CAIRN_CLUSTER_SECRET_FILE): a file holding "
            f"the secret, at least {MIN_SECRET_BYTES} bytes, the same on every node; nodes "
            "authenticate each other's node-to-node requests with it"
        )
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"--cluster-secret-file {path!r}: cannot read it: {exc}") from exc
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"--cluster-secret-file {path!r}: the secret has {len(secret)} bytes, "
            f"at least {MIN_SECRET_BYTES} are needed"
        )
    return secret
