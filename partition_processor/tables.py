"""Read/write access to the partition store.

``KeyValueReader`` / ``Store`` are the seams to the storage engines (RocksDB, memory).
``Transaction`` overlays one batch's pending writes on a reader: the state machine reads through
it and writes only into it, and the processor commits it as one atomic write batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

import msgspec

from partition_processor import keys
from partition_processor.journal import JournalEntry
from partition_processor.values import (
    FsmState,
    InboxEntry,
    InvocationStatus,
    ObjectLock,
    OutboxMessage,
    PromiseValue,
    QueuedPatch,
    SeenPatches,
    TimerValue,
)


class KeyValueReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def scan(
        self, prefix: bytes, start: bytes | None = None, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with ``prefix``, in ascending key order; from
        ``start`` on (a key with the prefix) and at most ``limit`` of them when given."""
        ...


class Store(KeyValueReader, Protocol):
    def commit(self, writes: Mapping[bytes, bytes | None]) -> None:
        """Apply every write atomically (``None`` deletes)."""
        ...

    def close(self) -> None: ...


_encoder = msgspec.msgpack.Encoder()
_status_decoder = msgspec.msgpack.Decoder(InvocationStatus)
_entry_decoder = msgspec.msgpack.Decoder(JournalEntry)
_fsm_decoder = msgspec.msgpack.Decoder(FsmState)
_timer_decoder = msgspec.msgpack.Decoder(TimerValue)
_outbox_decoder = msgspec.msgpack.Decoder(OutboxMessage)
_promise_decoder = msgspec.msgpack.Decoder(PromiseValue)
_lock_decoder = msgspec.msgpack.Decoder(ObjectLock)
_patch_decoder = msgspec.msgpack.Decoder(QueuedPatch)
_seen_patches_decoder = msgspec.msgpack.Decoder(SeenPatches)


def decode_outbox(raw: bytes) -> OutboxMessage:
    return _outbox_decoder.decode(raw)


def read_outbox(reader: KeyValueReader, partition: int) -> list[tuple[int, OutboxMessage]]:
    """Every undelivered outbox message, in sequence order."""
    prefix = keys.partition_prefix(keys.Kind.OUTBOX, partition)
    return [(keys.outbox_seq_of(k), decode_outbox(v)) for k, v in reader.scan(prefix)]


def decode_status(raw: bytes) -> InvocationStatus:
    return _status_decoder.decode(raw)


def decode_entry(raw: bytes) -> JournalEntry:
    return _entry_decoder.decode(raw)


def decode_timer(raw: bytes) -> TimerValue:
    return _timer_decoder.decode(raw)


def decode_lock(raw: bytes) -> ObjectLock:
    # A msgpack array (0x90-0x9f); rows written before the lock kept the inbox head hold the
    # holder's id alone, as UTF-8 ("inv_...").
    if raw[0] & 0xF0 == 0x90:
        return _lock_decoder.decode(raw)
    return ObjectLock(raw.decode())


def encode_inbox(entry: InboxEntry) -> bytes:
    return entry.encode() if isinstance(entry, str) else _encoder.encode(entry)


def decode_inbox(raw: bytes) -> InboxEntry:
    """An inbox row: a queued patch is a msgpack array (see ``QueuedPatch``), an invocation id
    is UTF-8 text (as every row written before patches existed)."""
    if raw and (raw[0] & 0xF0 == 0x90 or raw[0] in (0xDC, 0xDD)):
        return _patch_decoder.decode(raw)
    return raw.decode()


def state_version(entries: Iterable[tuple[str, bytes]]) -> str:
    """The version of an object's state: a digest of its entries (sorted by name), so that two
    stores holding the same state agree on it and any change of a name or value changes it.

    Names and values are length-prefixed, so no two different states hash the same bytes.
    """
    digest = hashlib.sha256()
    for name, value in sorted(entries):
        encoded = name.encode()
        digest.update(len(encoded).to_bytes(8, "big") + encoded)
        digest.update(len(value).to_bytes(8, "big") + value)
    return digest.hexdigest()


def read_fsm(reader: KeyValueReader, partition: int) -> FsmState:
    raw = reader.get(keys.fsm_key(partition))
    return FsmState() if raw is None else _fsm_decoder.decode(raw)


def read_status(
    reader: KeyValueReader, partition: int, invocation_id: str
) -> InvocationStatus | None:
    raw = reader.get(keys.status_key(partition, invocation_id))
    return None if raw is None else decode_status(raw)


def read_journal(reader: KeyValueReader, partition: int, invocation_id: str) -> list[JournalEntry]:
    return [decode_entry(v) for _, v in reader.scan(keys.journal_prefix(partition, invocation_id))]


def read_state(
    reader: KeyValueReader, partition: int, service: str, key: str, max_bytes: int
) -> tuple[list[tuple[str, bytes]], bool]:
    """The object's state entries in key order, as many as fit in ``max_bytes`` (names and
    values); the flag is True when that is all of it."""
    prefix = keys.state_prefix(partition, service, key)
    entries: list[tuple[str, bytes]] = []
    size = 0
    for raw_key, value in reader.scan(prefix):
        name = keys.state_name_of(raw_key, prefix)
        size += len(raw_key) - len(prefix) - 2 + len(value)  # name (after its length) + value
        if size > max_bytes:
            return entries, False
        entries.append((name, value))
    return entries, True


class Savepoint(msgspec.Struct, frozen=True):
    """Where ``Transaction.rollback`` returns to: the FSM row then (the writes since are undone
    from the transaction's undo log)."""

    fsm: FsmState


# Marks, in the undo log, a key the batch had not written before the savepoint.
_UNWRITTEN = object()


class Transaction:
    """One batch's view of a partition: the store plus the writes made so far."""

    def __init__(self, reader: KeyValueReader, partition: int) -> None:
        self.partition = partition
        self._reader = reader
        self.writes: dict[bytes, bytes | None] = {}
        self.fsm = read_fsm(reader, partition)
        # Each key's value in ``writes`` before its first write since the last savepoint. An
        # undo log rather than a copy of ``writes``: a savepoint is taken per record, so a copy
        # would cost the whole batch's writes per record.
        self._undo: dict[bytes, object] = {}
        # The statuses read or written in this batch, each with the bytes it was decoded from
        # (or encoded to): an invocation's effects read its status several times per record
        # (issue 10: 15% of apply was decoding the same row again). A hit needs the very bytes
        # object ``get`` returns now, so a later write, delete or rollback of the row is never
        # answered from here.
        self._statuses: dict[bytes, tuple[bytes, InvocationStatus]] = {}

    # -- savepoints: a record that cannot be applied leaves none of its writes behind

    def savepoint(self) -> Savepoint:
        """Start recording undo from here. Savepoints do not nest: a new one replaces the last."""
        self._undo = {}
        return Savepoint(self.fsm)

    def rollback(self, savepoint: Savepoint) -> None:
        """Undo every write made since ``savepoint``."""
        for key, previous in self._undo.items():
            if previous is _UNWRITTEN:
                del self.writes[key]
            else:
                self.writes[key] = previous  # type: ignore[assignment]
        self._undo = {}
        self.fsm = savepoint.fsm

    # -- raw access

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self._reader.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self._undo:
            self._undo[key] = self.writes.get(key, _UNWRITTEN)
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        if key not in self._undo:
            self._undo[key] = self.writes.get(key, _UNWRITTEN)
        self.writes[key] = None

    def scan(
        self, prefix: bytes, start: bytes | None = None, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        pending = {
            key: value
            for key, value in self.writes.items()
            if key.startswith(prefix) and (start is None or key >= start)
        }
        # Each pending write hides at most one stored row, so ``limit`` + that many stored rows
        # hold the first ``limit`` live ones: a bounded scan reads O(limit + batch), not the range.
        stored_limit = None if limit is None else limit + len(pending)
        merged: dict[bytes, bytes | None] = dict(self._reader.scan(prefix, start, stored_limit))
        merged.update(pending)
        yielded = 0
        for key in sorted(merged):
            value = merged[key]
            if value is not None:
                if limit is not None and yielded >= limit:
                    return
                yielded += 1
                yield key, value

    def encoded_fsm(self) -> tuple[bytes, bytes]:
        return keys.fsm_key(self.partition), _encoder.encode(self.fsm)

    # -- typed tables

    def status(self, invocation_id: str) -> InvocationStatus | None:
        key = keys.status_key(self.partition, invocation_id)
        raw = self.get(key)
        if raw is None:
            return None
        cached = self._statuses.get(key)
        if cached is not None and cached[0] is raw:
            return cached[1]
        status = decode_status(raw)
        self._statuses[key] = (raw, status)
        return status

    def put_status(self, status: InvocationStatus) -> None:
        key = keys.status_key(self.partition, status.invocation_id)
        raw = _encoder.encode(status)
        self.put(key, raw)
        self._statuses[key] = (raw, status)

    def delete_status(self, invocation_id: str) -> None:
        self.delete(keys.status_key(self.partition, invocation_id))

    def entry(self, invocation_id: str, index: int) -> JournalEntry | None:
        raw = self.get(keys.journal_key(self.partition, invocation_id, index))
        return None if raw is None else decode_entry(raw)

    def put_entry(self, invocation_id: str, index: int, entry: JournalEntry) -> None:
        self.put(keys.journal_key(self.partition, invocation_id, index), _encoder.encode(entry))

    def delete_journal(self, invocation_id: str, length: int) -> None:
        for index in range(length):
            self.delete(keys.journal_key(self.partition, invocation_id, index))

    def state_value(self, service: str, key: str, name: str) -> bytes | None:
        return self.get(keys.state_key(self.partition, service, key, name))

    def put_state_value(self, service: str, key: str, name: str, value: bytes) -> None:
        self.put(keys.state_key(self.partition, service, key, name), value)

    def delete_state_value(self, service: str, key: str, name: str) -> None:
        self.delete(keys.state_key(self.partition, service, key, name))

    def state_names(self, service: str, key: str) -> list[str]:
        prefix = keys.state_prefix(self.partition, service, key)
        return [keys.state_name_of(k, prefix) for k, _ in self.scan(prefix)]

    def object_state(self, service: str, key: str) -> dict[str, bytes]:
        """Every state entry of one object / workflow instance."""
        prefix = keys.state_prefix(self.partition, service, key)
        return {keys.state_name_of(k, prefix): v for k, v in self.scan(prefix)}

    def replace_state(
        self,
        service: str,
        key: str,
        current: Mapping[str, bytes],
        new_state: Mapping[str, bytes],
    ) -> None:
        """Make the object's state, ``current`` (as ``object_state`` read it), exactly
        ``new_state``: names not in it are deleted, unchanged values are not written."""
        for name in current.keys() - new_state.keys():
            self.delete_state_value(service, key, name)
        for name, value in new_state.items():
            if current.get(name) != value:
                self.put_state_value(service, key, name, value)

    def lock(self, service: str, key: str) -> ObjectLock | None:
        raw = self.get(keys.lock_key(self.partition, service, key))
        return None if raw is None else decode_lock(raw)

    def lock_holder(self, service: str, key: str) -> str | None:
        lock = self.lock(service, key)
        return None if lock is None else lock.holder

    def set_lock(
        self,
        service: str,
        key: str,
        invocation_id: str | None,
        inbox_head: int = 0,
        inbox_tail: int = 0,
    ) -> None:
        """Give the object's lock to ``invocation_id`` (None frees it). The defaults are a lock
        taken while free: the inbox is empty then (see ``ObjectLock.inbox_tail``)."""
        lock = keys.lock_key(self.partition, service, key)
        if invocation_id is None:
            self.delete(lock)
        else:
            self.put(lock, _encoder.encode(ObjectLock(invocation_id, inbox_head, inbox_tail)))

    def enqueue_inbox(
        self, service: str, key: str, entry: InboxEntry, lock: ObjectLock | None
    ) -> None:
        """Queue an invocation (its id) or a state patch behind the object's lock holder;
        ``lock`` is the object's lock as the caller just read it (its tail moves on)."""
        seq = self.fsm.inbox_seq
        self.fsm = msgspec.structs.replace(self.fsm, inbox_seq=seq + 1)
        self.put(keys.inbox_key(self.partition, service, key, seq), encode_inbox(entry))
        if lock is not None and lock.inbox_tail >= 0:
            self.set_lock(service, key, lock.holder, lock.inbox_head, seq + 1)

    def pop_inbox(self, service: str, key: str, from_seq: int = 0) -> tuple[InboxEntry, int] | None:
        """The oldest queued entry of the object at or after ``from_seq`` (below it every
        entry was popped already: see ``ObjectLock.inbox_head``), removed, with its sequence
        number. Reads one row, not the queue."""
        prefix = keys.inbox_prefix(self.partition, service, key)
        start = keys.inbox_key(self.partition, service, key, from_seq) if from_seq else None
        for inbox_key, value in self.scan(prefix, start, limit=1):
            self.delete(inbox_key)
            return decode_inbox(value), keys.inbox_seq_of(inbox_key)
        return None

    def timer(self, wake_ms: int, timer_id: str) -> TimerValue | None:
        raw = self.get(keys.timer_key(self.partition, wake_ms, timer_id))
        return None if raw is None else decode_timer(raw)

    def put_timer(self, wake_ms: int, timer_id: str, value: TimerValue) -> None:
        self.put(keys.timer_key(self.partition, wake_ms, timer_id), _encoder.encode(value))

    def delete_timer(self, wake_ms: int, timer_id: str) -> None:
        self.delete(keys.timer_key(self.partition, wake_ms, timer_id))

    def add_outbox(self, message: OutboxMessage) -> int:
        seq = self.fsm.outbox_seq + 1
        self.fsm = msgspec.structs.replace(self.fsm, outbox_seq=seq)
        self.put(keys.outbox_key(self.partition, seq), _encoder.encode(message))
        return seq

    def truncate_outbox(self, upto_seq: int) -> None:
        for key, _ in self.scan(keys.partition_prefix(keys.Kind.OUTBOX, self.partition)):
            if keys.outbox_seq_of(key) > upto_seq:
                break
            self.delete(key)

    def producer_seq(self, producer_id: str) -> int:
        raw = self.get(keys.dedup_key(self.partition, producer_id))
        return -1 if raw is None else int.from_bytes(raw, "big")

    def set_producer_seq(self, producer_id: str, seq: int) -> None:
        self.put(keys.dedup_key(self.partition, producer_id), seq.to_bytes(8, "big"))

    def seen_patches(self, service: str, key: str) -> SeenPatches:
        raw = self.get(keys.patches_key(self.partition, service, key))
        return SeenPatches() if raw is None else _seen_patches_decoder.decode(raw)

    def put_seen_patches(self, service: str, key: str, seen: SeenPatches) -> None:
        row = keys.patches_key(self.partition, service, key)
        if seen.patches:
            self.put(row, _encoder.encode(seen))
        else:
            self.delete(row)

    def promise(self, service: str, key: str, name: str) -> PromiseValue | None:
        raw = self.get(keys.promise_key(self.partition, service, key, name))
        return None if raw is None else _promise_decoder.decode(raw)

    def put_promise(self, service: str, key: str, name: str, value: PromiseValue) -> None:
        self.put(keys.promise_key(self.partition, service, key, name), _encoder.encode(value))

    def delete_object(self, service: str, key: str) -> None:
        """Every state value and promise of one object / workflow instance."""
        for prefix in (
            keys.state_prefix(self.partition, service, key),
            keys.promise_prefix(self.partition, service, key),
        ):
            for row_key, _ in self.scan(prefix):
                self.delete(row_key)
