"""restate-sdk's ``restate.retry_policy``: where restate-sdk code imports InvocationRetryPolicy."""

from sdk.definitions import InvocationRetryPolicy

__all__ = ["InvocationRetryPolicy"]
