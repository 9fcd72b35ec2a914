from sdk.endpoint import *  # noqa: F403
