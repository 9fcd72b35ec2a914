"""The upgrade check (README, Versions): replay the journals of unfinished invocations against
a new deployment, without side effects, before it takes traffic.

Each journal goes to the new endpoint in a ``Start`` with ``replay_only``: the SDK replays it and
stops where it ends (no step runs, nothing new is journaled), answering End (replayed cleanly),
Suspension (it waits on an entry not completed yet: also clean), or Error 570 with the entry of
the first mismatch. Nothing is appended to any log: the check only reads the partition stores.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

import grpc
import msgspec

from partition_processor import codes, keys
from partition_processor.ids import random_seed_of
from partition_processor.journal import JournalEntry, command_name
from partition_processor.tables import KeyValueReader, decode_status, read_journal
from partition_processor.values import InvocationStatus
from proto import endpoint_pb2 as pb
from proto import endpoint_pb2_grpc
from runtime.invoker import codec
from runtime.invoker.channels import ChannelPool
from runtime.metadata import Deployment

# Journals replayed at once: a check must not crowd out the endpoint's real work.
CONCURRENCY = 8
_ACTUAL = re.compile(r"the handler now does (.+?) but its journal recorded")


class Mismatch(msgspec.Struct, frozen=True):
    """An invocation the new code would not replay: ``entry_index`` is the first entry that
    differs (None when the replay failed otherwise, e.g. the handler is gone)."""

    invocation_id: str
    entry_index: int | None
    expected: str
    actual: str
    message: str


class HandlerReport(msgspec.Struct):
    handler: str  # Service/handler
    checked: int = 0
    clean: int = 0
    mismatches: list[Mismatch] = []


class CheckReport(msgspec.Struct):
    deployment_uri: str
    compatible: bool
    handlers: list[HandlerReport]


class Candidate(msgspec.Struct, frozen=True):
    """An unfinished invocation to replay, with its journal (from its partition's store)."""

    status: InvocationStatus
    journal: list[JournalEntry]


def candidates_of(
    store: KeyValueReader, partition: int, services: Iterable[str]
) -> list[Candidate]:
    """The unfinished invocations of ``services`` in ``partition`` that have a journal to
    replay (this node's store: the caller asks a replica for a partition it does not apply)."""
    wanted = set(services)
    found = []
    for _, raw in store.scan(keys.partition_prefix(keys.Kind.STATUS, partition)):
        status = decode_status(raw)
        if (
            status.phase not in ("completed", "inboxed")
            and status.target.service in wanted
            and status.journal_length > 0
        ):
            found.append(Candidate(status, read_journal(store, partition, status.invocation_id)))
    return found


async def check_upgrade(
    deployment: Deployment,
    candidates: list[Candidate],
    channels: ChannelPool,
    timeout_s: float,
) -> CheckReport:
    """Replay every candidate journal against ``deployment``; the report per handler."""
    reports: dict[str, HandlerReport] = {}
    for service in deployment.services:
        for handler in service.handlers:
            name = f"{service.name}/{handler}"
            reports[name] = HandlerReport(name)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(candidate: Candidate) -> None:
        status, journal = candidate.status, candidate.journal
        async with limit:
            mismatch = await _replay(deployment, status, journal, channels, timeout_s)
        name = f"{status.target.service}/{status.target.handler}"
        report = reports.setdefault(name, HandlerReport(name))
        report.checked += 1
        if mismatch is None:
            report.clean += 1
        else:
            report.mismatches.append(mismatch)

    await asyncio.gather(*(one(c) for c in candidates))
    handlers = sorted(reports.values(), key=lambda r: r.handler)
    compatible = all(not r.mismatches for r in handlers)
    return CheckReport(deployment.uri, compatible, handlers)


async def _replay(
    deployment: Deployment,
    status: InvocationStatus,
    journal: list[JournalEntry],
    channels: ChannelPool,
    timeout_s: float,
) -> Mismatch | None:
    """Replay one journal in replay-only mode; None when it replays cleanly."""
    invocation_id = status.invocation_id
    target = status.target
    messages = [
        pb.RuntimeMessage(
            start=pb.Start(
                invocation_id=invocation_id,
                service=target.service,
                handler=target.handler,
                key=target.key or "",
                known_entries=len(journal),
                random_seed=random_seed_of(invocation_id),
                attempt=status.attempt,
                cancel_seq=status.cancel_seq,
                replay_only=True,
            )
        )
    ]
    seal = channels.security.seal
    for index, entry in enumerate(journal):
        if seal is not None:
            entry = seal.unseal_entry(entry)
        messages.append(pb.RuntimeMessage(replay_entry=codec.entry_to_pb(index, entry)))

    def failed(reason: str) -> Mismatch:
        return Mismatch(invocation_id, None, "", "", reason)

    stub = endpoint_pb2_grpc.EndpointStub(channels.get(deployment.uri))
    call = stub.Invoke(metadata=channels.security.invoke_metadata(invocation_id, deployment.id))
    try:
        async with asyncio.timeout(timeout_s):
            for message in messages:
                await call.write(message)
            await call.done_writing()  # nothing more comes: an await of the unknown suspends
            while True:
                reply = await call.read()
                if reply is grpc.aio.EOF or not isinstance(reply, pb.SdkMessage):
                    return failed("the endpoint closed the stream without an answer")
                match reply.WhichOneof("kind"):
                    case "end" | "suspension":
                        return None
                    case "error":
                        return _mismatch(invocation_id, journal, reply.error)
                    case other:
                        return failed(f"the endpoint sent {other!r} in a replay-only check")
    except TimeoutError:
        return failed(f"no answer from {deployment.uri} within {timeout_s:g} s")
    except grpc.aio.AioRpcError as exc:
        return failed(f"endpoint {deployment.uri}: {exc.code().name}: {exc.details()}")
    finally:
        call.cancel()


def _mismatch(invocation_id: str, journal: list[JournalEntry], error: pb.Error) -> Mismatch:
    if error.code != codes.JOURNAL_MISMATCH or not error.HasField("related_entry"):
        reason = f"replay failed ({error.code}): {error.message}"
        return Mismatch(invocation_id, None, "", "", reason)
    index = error.related_entry
    expected = command_name(journal[index].command) if index < len(journal) else "the end"
    found = _ACTUAL.search(error.message)
    actual = found.group(1) if found else error.message
    return Mismatch(invocation_id, index, expected, actual, error.message)
