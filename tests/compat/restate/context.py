from sdk.context import *  # noqa: F403
