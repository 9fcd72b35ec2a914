"""`import restate` for code written for restate-sdk: the same names, served by Cairn's sdk."""

from sdk import *  # noqa: F403
from sdk import __all__ as __all__
