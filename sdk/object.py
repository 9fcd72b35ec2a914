"""restate-sdk's ``restate.object``: ``from restate.object import VirtualObject``."""

from sdk.definitions import VirtualObject

__all__ = ["VirtualObject"]
