"""What an SDK ``InvocationSession`` has queued for the runtime, for tests of what it sends."""

from __future__ import annotations

from proto import endpoint_pb2 as pb
from sdk.invocation import InvocationSession


def sent_messages(session: InvocationSession) -> list[pb.SdkMessage]:
    """Everything queued on ``session`` so far, in order (taken off its queue)."""
    sent = []
    while not session.outgoing.empty():
        message = session.outgoing.get_nowait()
        assert message is not None
        sent.append(message)
    return sent
