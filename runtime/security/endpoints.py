"""How the node reaches SDK endpoints: plaintext or TLS channels, and signed calls."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from runtime.security.headers import HeaderSeal
from runtime.security.identity import ATTEMPTS_SUBJECT, DISCOVER_SUBJECT, RequestSigner

ChannelOptions = Sequence[tuple[str, int | str]]


class EndpointSecurity:
    """The TLS credentials (for ``grpcs://``/``https://`` deployments), the request signer and
    the secret-header seal of the node's traffic with endpoints (None: headers pass as they
    are stored)."""

    def __init__(
        self,
        *,
        seal: HeaderSeal | None = None,
        signer: RequestSigner | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.seal = seal
        self._signer = signer
        self._credentials = credentials

    def channel(self, target: str, tls: bool, options: ChannelOptions = ()) -> grpc.aio.Channel:
        if not tls:
            return grpc.aio.insecure_channel(target, options=list(options))
        credentials = self._credentials or grpc.ssl_channel_credentials()
        return grpc.aio.secure_channel(target, credentials, options=list(options))

    def invoke_metadata(
        self, invocation_id: str, deployment_id: str
    ) -> tuple[tuple[str, str], ...]:
        """The metadata of an attempt's stream: its signature, when the node signs."""
        if self._signer is None:
            return ()
        return self._signer.metadata(invocation_id, deployment_id)

    def attempts_metadata(self, deployment_id: str) -> tuple[tuple[str, str], ...]:
        """The metadata of a deployment's ``Attempts`` stream (many attempts: its own subject)."""
        if self._signer is None:
            return ()
        return self._signer.metadata(ATTEMPTS_SUBJECT, deployment_id)

    def discover_metadata(self, deployment_id: str) -> tuple[tuple[str, str], ...]:
        if self._signer is None:
            return ()
        return self._signer.metadata(DISCOVER_SUBJECT, deployment_id)
