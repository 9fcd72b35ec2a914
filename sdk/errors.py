"""Errors a handler sees or raises."""

from __future__ import annotations


class TerminalError(Exception):
    """A failure that ends the invocation (or the step) for good: it is never retried.

    Raise it from a handler to fail the invocation with ``status_code``; the HTTP caller gets that
    status and ``{"code", "message"}``. Awaiting a call, promise or awakeable that failed raises it.
    """

    def __init__(self, message: str, status_code: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def __repr__(self) -> str:
        return f"TerminalError({self.message!r}, status_code={self.status_code})"


class JournalMismatch(Exception):
    """The handler replayed differently than its journal says it ran (non-determinism)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


class Suspended(BaseException):  # noqa: N818 - a control-flow signal, like CancelledError
    """Unwinds a handler whose attempt suspends; user code must not catch it.

    A ``BaseException`` so that ``except Exception`` in handlers lets it through.
    """

    def __init__(self, awaiting: list[int]) -> None:
        super().__init__(awaiting)
        self.awaiting = awaiting


class AttemptClosed(BaseException):  # noqa: N818 - a control-flow signal
    """The runtime went away (stream closed) while the handler ran; the attempt is abandoned."""
