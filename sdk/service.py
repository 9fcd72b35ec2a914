"""restate-sdk's ``restate.service``: ``from restate.service import Service``."""

from sdk.definitions import Service

__all__ = ["Service"]
