"""TLS: the node's HTTP servers (``--tls-cert-file``/``--tls-key-file``) and its channels to
``grpcs://``/``https://`` deployments (a CA bundle, optionally a client certificate)."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from runtime.security.errors import SecuritySetupError


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SecuritySetupError(f"cannot read the {what} {path!r}: {exc}") from exc


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The TLS context of the ingress and admin servers (TLS 1.2 or later)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise SecuritySetupError(
            f"cannot use --tls-cert-file {cert_file!r} with --tls-key-file {key_file!r}: {exc}"
        ) from exc
    return context


def deployment_credentials(ca_file: str, cert_file: str, key_file: str) -> grpc.ChannelCredentials:
    """Credentials of the channels to TLS deployments: trust ``ca_file`` (the system's roots when
    empty); present ``cert_file``/``key_file`` as the client certificate when given."""
    if bool(cert_file) != bool(key_file):
        raise SecuritySetupError(
            "--deployment-client-cert-file and --deployment-client-key-file go together"
        )
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file, "CA bundle") if ca_file else None,
        private_key=_read(key_file, "client key") if key_file else None,
        certificate_chain=_read(cert_file, "client certificate") if cert_file else None,
    )
