from sdk.exceptions import *  # noqa: F403
