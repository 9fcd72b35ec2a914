"""restate-sdk's ``restate.asyncio``: the combinators over durable futures (in ``sdk.futures``).

Named as restate-sdk names it; imports inside this package are absolute, so it does not hide the
standard library's ``asyncio``.
"""

from sdk.futures import as_completed, gather, select, wait_completed

__all__ = ["as_completed", "gather", "select", "wait_completed"]
