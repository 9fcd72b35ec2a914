"""The rows of the SQL introspection tables (README "SQL introspection"), read from a store.

Partition tables (``sys_invocation``, ``sys_journal``, ``state``, ``sys_inbox``,
``sys_promise``) are read per partition, through the key parsers of ``keys.py`` and the
decoders of ``tables.py``, so that a node can read the partitions it applies and ask another
node for the rest (``runtime/admin/sql.py``). Rows are plain tuples (str, int, bool, bytes,
None) in column order: msgpack carries them between nodes unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from partition_processor import keys
from partition_processor.journal import Failure, JournalEntry, Success
from partition_processor.tables import KeyValueReader, decode_entry, decode_inbox, decode_status
from partition_processor.values import PromiseValue
from runtime.metadata import Registry

Row = tuple[Any, ...]

# Column name -> DuckDB type, in column order.
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "sys_invocation": [
        ("partition", "INTEGER"),
        ("id", "VARCHAR"),
        ("target", "VARCHAR"),
        ("service", "VARCHAR"),
        ("handler", "VARCHAR"),
        ("key", "VARCHAR"),
        ("status", "VARCHAR"),
        ("created_ms", "BIGINT"),
        ("modified_ms", "BIGINT"),
        ("attempt", "INTEGER"),
        ("retry_count", "INTEGER"),
        ("journal_length", "INTEGER"),
        ("last_failure_code", "INTEGER"),
        ("last_failure", "VARCHAR"),
        ("idempotency_key", "VARCHAR"),
        ("deployment", "VARCHAR"),
        ("pinned", "BOOLEAN"),
    ],
    "sys_journal": [
        ("partition", "INTEGER"),
        ("invocation_id", "VARCHAR"),
        ("index", "INTEGER"),
        ("entry_type", "VARCHAR"),
        ("name", "VARCHAR"),
        ("completed", "BOOLEAN"),
        ("value", "JSON"),
    ],
    "state": [
        ("partition", "INTEGER"),
        ("service", "VARCHAR"),
        ("key", "VARCHAR"),
        ("state_key", "VARCHAR"),
        ("value", "JSON"),
        ("value_raw", "BLOB"),
    ],
    "sys_inbox": [
        ("partition", "INTEGER"),
        ("service", "VARCHAR"),
        ("key", "VARCHAR"),
        ("sequence_number", "BIGINT"),
        ("invocation_id", "VARCHAR"),
    ],
    "sys_promise": [
        ("partition", "INTEGER"),
        ("service", "VARCHAR"),
        ("key", "VARCHAR"),
        ("name", "VARCHAR"),
        ("completed", "BOOLEAN"),
        ("value", "JSON"),
        ("waiters", "INTEGER"),
    ],
    "sys_service": [
        ("name", "VARCHAR"),
        ("ty", "VARCHAR"),
        ("deployment_id", "VARCHAR"),
        ("revision", "INTEGER"),
        ("handlers", "JSON"),
    ],
    "sys_deployment": [
        ("id", "VARCHAR"),
        ("uri", "VARCHAR"),
        ("services", "JSON"),
        ("registered_ms", "BIGINT"),
    ],
}
# Read from a partition store; the others come from the node's metadata.
PARTITION_TABLES = frozenset({"sys_invocation", "sys_journal", "state", "sys_inbox", "sys_promise"})


class TooManyRows(Exception):
    """A query would load more rows than the node's bound (``NodeConfig.sql_scan_rows_max``)."""


_promise_decoder = msgspec.msgpack.Decoder(PromiseValue)


def _json_text(value: bytes) -> str | None:
    """A stored value as JSON text when it is JSON, else None (``value_raw`` keeps it)."""
    try:
        msgspec.json.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return value.decode()


def _completion_json(entry: JournalEntry) -> str | None:
    match entry.completion:
        case None:
            return None
        case Success(value=value):
            return _json_text(value) or msgspec.json.encode({"base64": value.hex()}).decode()
        case Failure(code=code, message=message):
            return msgspec.json.encode({"failure": {"code": code, "message": message}}).decode()
        case other:
            return msgspec.json.encode(msgspec.to_builtins(other)).decode()


def _invocation_rows(
    partition: int, raw: Iterable[tuple[bytes, bytes]], deployment_of: Callable[[str], str | None]
) -> Iterable[Row]:
    for _, value in raw:
        status = decode_status(value)
        target, failure = status.target, status.last_failure
        yield (
            partition,
            status.invocation_id,
            target.describe(),
            target.service,
            target.handler,
            target.key,
            status.phase,
            status.created_ms,
            status.modified_ms,
            status.attempt,
            status.retry_count,
            status.journal_length,
            failure.code if failure else None,
            failure.message if failure else None,
            status.idempotency_key,
            # Its attempts run on the deployment it is pinned to (README, Versions); one not yet
            # started will start on the one serving its service now.
            status.deployment_id or deployment_of(target.service),
            status.deployment_id is not None,
        )


def _journal_rows(partition: int, raw: Iterable[tuple[bytes, bytes]]) -> Iterable[Row]:
    for key, value in raw:
        invocation_id, index = keys.parse_journal_key(key)
        entry = decode_entry(value)
        command = entry.command
        name = getattr(command, "name", None) or getattr(command, "key", None)
        yield (
            partition,
            invocation_id,
            index,
            str(command.__struct_config__.tag),
            name if isinstance(name, str) else None,
            entry.completion is not None,
            _completion_json(entry),
        )


def _state_rows(partition: int, raw: Iterable[tuple[bytes, bytes]]) -> Iterable[Row]:
    for key, value in raw:
        service, object_key, name = keys.parse_state_key(key)
        yield (partition, service, object_key, name, _json_text(value), value)


def _inbox_rows(partition: int, raw: Iterable[tuple[bytes, bytes]]) -> Iterable[Row]:
    for key, value in raw:
        service, object_key, seq = keys.parse_inbox_key(key)
        entry = decode_inbox(value)
        # (A queued state patch has no invocation id.)
        yield (partition, service, object_key, seq, entry if isinstance(entry, str) else None)


def _promise_rows(partition: int, raw: Iterable[tuple[bytes, bytes]]) -> Iterable[Row]:
    for key, value in raw:
        service, object_key, name = keys.parse_promise_key(key)
        promise = _promise_decoder.decode(value)
        result = promise.result
        shown: str | None = None
        if isinstance(result, Success):
            shown = _json_text(result.value)
        elif isinstance(result, Failure):
            failure = {"failure": {"code": result.code, "message": result.message}}
            shown = msgspec.json.encode(failure).decode()
        yield (
            partition,
            service,
            object_key,
            name,
            result is not None,
            shown,
            len(promise.waiters),
        )


_KINDS = {
    "sys_invocation": keys.Kind.STATUS,
    "sys_journal": keys.Kind.JOURNAL,
    "state": keys.Kind.STATE,
    "sys_inbox": keys.Kind.INBOX,
    "sys_promise": keys.Kind.PROMISE,
}


def partition_rows(
    store: KeyValueReader,
    table: str,
    partitions: Iterable[int],
    *,
    budget: int,
    deployment_of: Callable[[str], str | None] = lambda _: None,
) -> list[Row]:
    """Every row of ``table`` in ``partitions``; ``TooManyRows`` past ``budget`` rows (the
    scan stops there: a bound on work, not only on the answer)."""
    rows: list[Row] = []
    for partition in sorted(partitions):
        prefix = keys.partition_prefix(_KINDS[table], partition)
        # One more row than the budget allows tells "exactly at the bound" from "past it".
        raw = store.scan(prefix, None, budget - len(rows) + 1)
        match table:
            case "sys_invocation":
                rows.extend(_invocation_rows(partition, raw, deployment_of))
            case "sys_journal":
                rows.extend(_journal_rows(partition, raw))
            case "state":
                rows.extend(_state_rows(partition, raw))
            case "sys_inbox":
                rows.extend(_inbox_rows(partition, raw))
            case "sys_promise":
                rows.extend(_promise_rows(partition, raw))
        if len(rows) > budget:
            raise TooManyRows(
                f"the query reads more than {budget} rows of {table} "
                "(--sql-scan-rows-max); query fewer tables or raise the bound"
            )
    return rows


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def metadata_rows(registry: Registry, table: str) -> list[Row]:
    """The rows of ``sys_service`` or ``sys_deployment`` (the metadata every node holds)."""
    if table == "sys_service":
        return [
            (s.name, s.service_type, s.deployment_id, s.revision, _json(sorted(s.handlers)))
            for s in registry.services()
        ]
    return [
        (d.id, d.uri, _json([s.name for s in d.services]), d.registered_ms)
        for d in registry.deployments()
    ]


def deployment_lookup(registry: Registry) -> Callable[[str], str | None]:
    """The deployment now serving a service (for the invocations not pinned to one yet)."""

    def deployment_of(service: str) -> str | None:
        info = registry.service(service)
        return info.deployment_id or None if info is not None else None

    return deployment_of
