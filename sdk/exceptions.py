"""restate-sdk's ``restate.exceptions``: the errors handler code raises and catches.

Code written for restate-sdk imports ``TerminalError`` from here (``from restate.exceptions import
TerminalError``); the classes live in ``sdk.errors``.
"""

from sdk.errors import SdkInternalBaseException, TerminalError, is_internal_exception

__all__ = ["SdkInternalBaseException", "TerminalError", "is_internal_exception"]
