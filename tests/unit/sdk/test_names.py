"""The public names of restate-sdk 1.3 (``restate/__init__.py``) that concern handlers."""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

import pytest

import sdk as restate
from proto import endpoint_pb2 as pb
from sdk._engine.machine import InvocationMachine
from sdk.errors import AttemptClosed, Suspended
from sdk.invocation import InvocationSession, current_session

# restate-sdk 1.3's ``__all__``, in its order, split into what handlers use (all provided) and
# what Cairn deliberately does not provide.
PROVIDED = [
    "Service",
    "VirtualObject",
    "Workflow",
    "Context",
    "ObjectContext",
    "ObjectSharedContext",
    "WorkflowContext",
    "WorkflowSharedContext",
    "DurablePromise",
    "RestateDurableFuture",
    "RestateDurableCallFuture",
    "RestateDurableSleepFuture",
    "SendHandle",
    "RunOptions",
    "TerminalError",
    "app",
    "gather",
    "as_completed",
    "wait_completed",
    "select",
    "logging",
    "RestateLoggingFilter",
    "InvocationRetryPolicy",
    "SdkInternalBaseException",
    "is_internal_exception",
    "getLogger",
]
NOT_PROVIDED = {
    # ctx.scope(...) needs scoped virtual-object invocations in the runtime, which Cairn lacks.
    "ScopedContext": "scopes",
    # Custom encodings of journal values (e.g. encryption); restate.app refuses the keyword.
    "JournalValueCodec": "journal codecs",
    "JournalValueCodecProvider": "journal codecs",
    # Restate Cloud tunnels: an endpoint dialling out to a hosted server; not about handlers.
    "connect": "cloud tunnel",
    "with_connection": "cloud tunnel",
    "ConnectError": "cloud tunnel",
    # A test harness that starts a Restate server in Docker; Cairn's is tests/e2e/harness.py.
    "create_test_harness": "harness",
    "test_harness": "harness",
    "HarnessEnvironment": "harness",
    # An HTTP client of the ingress; not part of handler code (any HTTP client works).
    "RestateClient": "client",
    "RestateClientSendHandle": "client",
    "HttpError": "client",
    "create_client": "client",
}


@pytest.mark.parametrize("name", PROVIDED)
def test_every_handler_name_of_restate_sdk_is_exported(name: str) -> None:
    assert name in restate.__all__
    assert getattr(restate, name) is not None


def test_the_lists_cover_restate_sdk_1_3_exactly() -> None:
    assert len(PROVIDED) + len(NOT_PROVIDED) == 39  # len(restate.__all__) in restate-sdk 1.3
    assert not set(PROVIDED) & set(NOT_PROVIDED)


def test_the_alias_package_serves_the_same_names() -> None:
    import restate as alias  # tests/compat, as the e2e apps import it

    importlib.import_module("restate.logging")  # alias.logging is now the alias's own submodule

    assert alias.__all__ == restate.__all__
    for name in restate.__all__:
        ours, theirs = getattr(restate, name), getattr(alias, name)
        if isinstance(ours, ModuleType):  # ``logging``, ``serde``: once imported, the alias's own
            assert all(getattr(theirs, n) is getattr(ours, n) for n in ours.__all__), name
        else:
            assert theirs is ours, name


def test_internal_exceptions() -> None:
    assert restate.is_internal_exception(Suspended([1]))
    assert restate.is_internal_exception(AttemptClosed())
    assert not restate.is_internal_exception(restate.TerminalError("x"))
    assert not issubclass(restate.SdkInternalBaseException, Exception)


def test_get_logger_drops_records_while_the_handler_replays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = restate.getLogger("compat.test")
    assert restate.getLogger("compat.test").filters == logger.filters  # one filter, not two
    start = pb.Start(invocation_id="inv_test", known_entries=2)
    journal = [
        pb.JournalEntry(index=0, command=pb.JournalCommand(input=pb.InputCommand())),
        pb.JournalEntry(index=1, command=pb.JournalCommand(run=pb.RunCommand(name="a"))),
    ]
    session = InvocationSession(InvocationMachine(start, journal), 60.0)
    token = current_session.set(session)
    try:
        with caplog.at_level(logging.INFO, logger="compat.test"):
            logger.info("while replaying")
            session.command(pb.JournalCommand(run=pb.RunCommand(name="a")))  # journal's end
            logger.info("past the journal")
    finally:
        current_session.reset(token)
    assert [r.getMessage() for r in caplog.records] == ["past the journal"]
