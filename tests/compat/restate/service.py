from sdk.service import *  # noqa: F403
