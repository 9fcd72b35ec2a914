from sdk.object import *  # noqa: F403
