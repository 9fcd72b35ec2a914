"""A node's security settings, loaded once from ``NodeConfig`` (README, Security)."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.security.endpoints import EndpointSecurity
from runtime.security.headers import HeaderSeal, load_or_create_key
from runtime.security.identity import RequestSigner, load_signing_key
from runtime.security.tls import deployment_credentials, server_ssl_context
from runtime.security.tokens import BearerTokens, Middleware, token_middleware

if TYPE_CHECKING:
    from runtime.config import NodeConfig

log = logging.getLogger(__name__)

# Health checks stay open: load balancers and orchestrators probe them without credentials.
INGRESS_OPEN_PATHS = frozenset({"/restate/health"})
ADMIN_OPEN_PATHS = frozenset({"/health"})
# The web console's pages (runtime.console): the admin token also as a Basic password there.
CONSOLE_PREFIX = "/ui"
HEADER_KEY_FILE = "header.key"


class NodeSecurity:
    """Tokens, TLS contexts, the request signer and the header seal of one node."""

    def __init__(
        self,
        *,
        admin_tokens: BearerTokens | None,
        ingress_tokens: BearerTokens | None,
        server_ssl_context: ssl.SSLContext | None,
        endpoints: EndpointSecurity,
        seal: HeaderSeal,
    ) -> None:
        self._admin_tokens = admin_tokens
        self._ingress_tokens = ingress_tokens
        self.server_ssl_context = server_ssl_context
        self.endpoints = endpoints
        self.seal = seal

    @classmethod
    def load(cls, config: NodeConfig) -> NodeSecurity:
        """Read every file the settings name; ``SecuritySetupError`` names the one that fails."""
        admin_tokens = (
            BearerTokens(Path(config.admin_token_file)) if config.admin_token_file else None
        )
        ingress_tokens = (
            BearerTokens(Path(config.ingress_token_file)) if config.ingress_token_file else None
        )
        tls = bool(config.tls_cert_file)
        server_context = (
            server_ssl_context(config.tls_cert_file, config.tls_key_file) if tls else None
        )
        signer = (
            RequestSigner(load_signing_key(Path(config.request_signing_key_file)))
            if config.request_signing_key_file
            else None
        )
        if config.cluster and config.secret_headers and not config.header_key_file:
            log.warning(
                "secret headers (%s) are sealed with this node's own key: a handler run by "
                "another node will not see them; give every node the same --header-key-file",
                ",".join(config.secret_headers),
            )
        key_path = Path(config.header_key_file or config.data_dir / HEADER_KEY_FILE)
        seal = HeaderSeal(config.secret_headers, load_or_create_key(key_path))
        credentials = deployment_credentials(
            config.deployment_ca_file,
            config.deployment_client_cert_file,
            config.deployment_client_key_file,
        )
        return cls(
            admin_tokens=admin_tokens,
            ingress_tokens=ingress_tokens,
            server_ssl_context=server_context,
            endpoints=EndpointSecurity(seal=seal, signer=signer, credentials=credentials),
            seal=seal,
        )

    def admin_middleware(self) -> Middleware | None:
        if self._admin_tokens is None:
            return None
        return token_middleware(
            self._admin_tokens,
            open_paths=ADMIN_OPEN_PATHS,
            source=None,
            browser_prefix=CONSOLE_PREFIX,
        )

    def ingress_middleware(self) -> Middleware | None:
        if self._ingress_tokens is None:
            return None
        return token_middleware(
            self._ingress_tokens, open_paths=INGRESS_OPEN_PATHS, source="ingress"
        )
