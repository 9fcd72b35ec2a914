from sdk.retry_policy import *  # noqa: F403
