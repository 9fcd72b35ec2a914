from sdk.serde import *  # noqa: F403
