"""Errors a handler sees or raises."""

from __future__ import annotations

from proto import endpoint_pb2 as pb


class TerminalError(Exception):
    """A failure that ends the invocation (or the step) for good: it is never retried.

    Raise it from a handler to fail the invocation with ``status_code``; the HTTP caller gets that
    status and ``{"code", "message"}`` (plus ``"metadata"`` when given). Awaiting a call, promise or
    awakeable that failed raises it, with the ``metadata`` it was raised with.
    """

    def __init__(
        self, message: str, status_code: int = 500, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        if metadata is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise TypeError(f"TerminalError metadata must be dict[str, str], got {metadata!r}")
        self.message = message
        self.status_code = status_code
        self.metadata = metadata

    def __repr__(self) -> str:
        extra = f", metadata={self.metadata!r}" if self.metadata else ""
        return f"TerminalError({self.message!r}, status_code={self.status_code}{extra})"

    def to_failure(self) -> pb.Failure:
        """The wire form of this failure (``Failure`` in proto/endpoint.proto)."""
        return pb.Failure(code=self.status_code, message=self.message, metadata=self.metadata or {})

    @classmethod
    def from_failure(cls, failure: pb.Failure) -> TerminalError:
        return cls(failure.message, failure.code or 500, dict(failure.metadata) or None)


class JournalMismatch(Exception):
    """The handler replayed differently than its journal says it ran (non-determinism)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


class SdkInternalBaseException(BaseException):
    """The SDK's control-flow signals (restate-sdk's name): a handler must let them through.

    A ``BaseException`` so that ``except Exception`` in handlers does not catch them; code with a
    bare ``except:`` re-raises when ``is_internal_exception(e)``.
    """


def is_internal_exception(e: BaseException) -> bool:
    """Whether ``e`` is one of the SDK's control-flow signals, which must be re-raised."""
    return isinstance(e, SdkInternalBaseException)


class Suspended(SdkInternalBaseException):  # noqa: N818 - a control-flow signal
    """Unwinds a handler whose attempt suspends; user code must not catch it."""

    def __init__(self, awaiting: list[int]) -> None:
        super().__init__(awaiting)
        self.awaiting = awaiting


class AttemptClosed(SdkInternalBaseException):  # noqa: N818 - a control-flow signal
    """The runtime went away (stream closed) while the handler ran; the attempt is abandoned."""


class ReplayExhausted(SdkInternalBaseException):  # noqa: N818 - a control-flow signal
    """A replay-only attempt (an upgrade check) reached the end of its journal: the handler
    stops there, before anything new (a step, a call, state) would run."""
