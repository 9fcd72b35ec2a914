"""``GET /invocations`` pages (``runtime/admin/listing.py``) over a real store's key order."""

from __future__ import annotations

import pytest

from partition_processor.commands import Target
from partition_processor.ids import invocation_id_for
from partition_processor.store_memory import MemoryStore
from partition_processor.tables import Transaction
from partition_processor.values import InvocationStatus, Phase
from runtime.admin.listing import BadListing, Cursor, list_invocations, parse_limit

PARTITIONS = 3


def _store(count: int) -> tuple[MemoryStore, set[str]]:
    store = MemoryStore()
    ids = set()
    for n in range(count):
        invocation_id = invocation_id_for("Greeter", "greet", None, None, entropy=bytes([n] * 16))
        partition = n % PARTITIONS
        tx = Transaction(store, partition)
        phase: Phase = "completed" if n % 4 == 0 else "invoked"
        target = Target("Greeter", "greet")
        tx.put_status(InvocationStatus(invocation_id, target, phase, created_ms=n, modified_ms=n))
        store.commit(tx.writes)
        ids.add(invocation_id)
    return store, ids


def _walk(store: MemoryStore, limit: int, **options: object) -> tuple[list[str], int]:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        rows, cursor = list_invocations(
            store,
            PARTITIONS,
            status=options.get("status"),  # type: ignore[arg-type]
            limit=limit,
            cursor=cursor,
            scan_rows_max=options.get("scan_rows_max", 10_000),  # type: ignore[arg-type]
        )
        assert len(rows) <= limit
        seen += [str(row["id"]) for row in rows]
        pages += 1
        if cursor is None:
            return seen, pages
        cursor = Cursor.parse(str(cursor), PARTITIONS)  # as a client sends it back


def test_pages_cover_every_invocation_once() -> None:
    store, ids = _store(50)
    seen, pages = _walk(store, 7)
    assert len(seen) == len(set(seen)) == 50 and set(seen) == ids
    assert pages >= 8


def test_a_filter_with_a_small_scan_budget_still_finds_everything() -> None:
    store, _ = _store(50)
    completed, pages = _walk(store, 100, status="completed", scan_rows_max=5)
    assert len(completed) == len(set(completed)) == 13
    assert pages >= 10  # each page examined at most 5 rows


def test_bad_limits_and_cursors_are_refused() -> None:
    assert parse_limit(None) == 100
    assert parse_limit("1000") == 1000
    for raw in ("0", "1001", "-1", "x", "١٠"):
        with pytest.raises(BadListing):
            parse_limit(raw)
    for raw in ("", "nope", "3:inv_x", "9:" + "inv_" + "0" * 48, "x:y", "1"):
        with pytest.raises(BadListing):
            Cursor.parse(raw, PARTITIONS)
