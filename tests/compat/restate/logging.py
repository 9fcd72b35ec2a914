from sdk.logging import *  # noqa: F403
