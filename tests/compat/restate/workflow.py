from sdk.workflow import *  # noqa: F403
