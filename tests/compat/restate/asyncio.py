from sdk.asyncio import *  # noqa: F403
