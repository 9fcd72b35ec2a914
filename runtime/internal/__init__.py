"""The private node-to-node API of a cluster (DESIGN §8): one server on ``--internal-bind``,
one client, a route table, a shared secret. Nothing node-to-node runs on the admin API."""

from runtime.internal.client import InternalClient, PeerError
from runtime.internal.server import (
    InternalHandler,
    InternalRoutes,
    InternalServer,
    RejectedRequest,
)
from runtime.internal.settings import advertised_host, read_cluster_secret

__all__ = [
    "InternalClient",
    "InternalHandler",
    "InternalRoutes",
    "InternalServer",
    "PeerError",
    "RejectedRequest",
    "advertised_host",
    "read_cluster_secret",
]
