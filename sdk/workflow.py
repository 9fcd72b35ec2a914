"""restate-sdk's ``restate.workflow``: ``from restate.workflow import Workflow``."""

from sdk.definitions import Workflow

__all__ = ["Workflow"]
