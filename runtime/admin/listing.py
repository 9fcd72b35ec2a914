"""``GET /invocations``, paged: each page scans a bounded number of status rows from a cursor.

Pages follow the store's key order (partition, then invocation id), which is stable while
invocations come and go, so a cursor stays valid: a listing never skips or repeats a row that
exists during the whole walk.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from partition_processor import keys
from partition_processor.ids import InvalidInvocationId, parse_partition_key
from partition_processor.tables import KeyValueReader, decode_status

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Rows one request may examine: with a ``status`` filter few rows may match, and a page then ends
# early (with a cursor) rather than scanning the whole store.
SCAN_ROWS_MAX = 10_000
_CHUNK_ROWS = 256


class BadListing(ValueError):
    """A malformed ``limit`` or ``cursor``."""


class Cursor:
    """Where a page ended: after ``invocation_id`` in ``partition``. Shown as ``P:inv_...``."""

    def __init__(self, partition: int, invocation_id: str) -> None:
        self.partition = partition
        self.invocation_id = invocation_id

    def __str__(self) -> str:
        return f"{self.partition}:{self.invocation_id}"

    @classmethod
    def parse(cls, raw: str, partitions: int) -> Cursor:
        partition, _, invocation_id = raw.partition(":")
        if not partition.isdigit() or not partition.isascii() or int(partition) >= partitions:
            raise BadListing(f"bad cursor {raw!r}: use the 'next' of the previous page")
        try:
            parse_partition_key(invocation_id)
        except InvalidInvocationId as exc:
            raise BadListing(f"bad cursor {raw!r}: {exc}") from exc
        return cls(int(partition), invocation_id)


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not raw.isascii() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadListing(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


def _row(raw: bytes) -> dict[str, Any]:
    status = decode_status(raw)
    return {
        "id": status.invocation_id,
        "target": status.target.describe(),
        "status": status.phase,
        "attempt": status.attempt,
        "created_ms": status.created_ms,
        "modified_ms": status.modified_ms,
    }


class PartitionPage(msgspec.Struct, frozen=True):
    """Rows of one partition after a cursor; ``after`` is set when the partition has more."""

    rows: list[dict[str, Any]]
    scanned: int
    after: str | None


def list_partition(
    store: KeyValueReader,
    partition: int,
    *,
    status: str | None,
    limit: int,
    after: str | None,
    budget: int,
) -> PartitionPage:
    """Up to ``limit`` invocations of ``partition`` (of phase ``status`` if given) after the id
    ``after``, scanning at most ``budget`` rows."""
    rows: list[dict[str, Any]] = []
    scanned = 0
    prefix = keys.partition_prefix(keys.Kind.STATUS, partition)
    while True:
        # The smallest key after the cursor's: the cursor's own key plus a zero byte.
        start = keys.status_key(partition, after) + b"\0" if after is not None else None
        wanted = min(_CHUNK_ROWS, budget - scanned)
        chunk = list(store.scan(prefix, start, wanted))
        for _, raw in chunk:
            scanned += 1
            row = _row(raw)
            after = row["id"]
            if status is None or row["status"] == status:
                rows.append(row)
            if len(rows) >= limit or scanned >= budget:
                return PartitionPage(rows, scanned, after)
        if len(chunk) < wanted:
            return PartitionPage(rows, scanned, None)  # this partition is done


PageSource = Callable[[int, str | None, int, str | None, int], Awaitable[PartitionPage]]


async def walk_invocations(
    source: PageSource,
    partitions: int,
    *,
    status: str | None,
    limit: int,
    cursor: Cursor | None,
    scan_rows_max: int = SCAN_ROWS_MAX,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page over every partition: ``source(partition, status, limit, after, budget)`` reads
    one partition (from this node's store, or from a replica of it in a cluster)."""
    rows: list[dict[str, Any]] = []
    budget = scan_rows_max
    partition = cursor.partition if cursor is not None else 0
    after = cursor.invocation_id if cursor is not None else None
    while partition < partitions:
        page = await source(partition, status, limit - len(rows), after, budget)
        rows += page.rows
        budget -= page.scanned
        if page.after is not None:
            if len(rows) >= limit or budget <= 0:
                return rows, Cursor(partition, page.after)
            after = page.after  # (a source may return less than asked: go on from there)
            continue
        partition, after = partition + 1, None
    return rows, None


def list_invocations(
    store: KeyValueReader,
    partitions: int,
    *,
    status: str | None,
    limit: int,
    cursor: Cursor | None,
    scan_rows_max: int = SCAN_ROWS_MAX,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Up to ``limit`` invocations (of phase ``status`` if given) after ``cursor`` in one
    store, and the cursor of the next page (None: the listing is complete)."""

    async def local(
        partition: int, status: str | None, limit: int, after: str | None, budget: int
    ) -> PartitionPage:
        return list_partition(
            store, partition, status=status, limit=limit, after=after, budget=budget
        )

    walk = walk_invocations(
        local, partitions, status=status, limit=limit, cursor=cursor, scan_rows_max=scan_rows_max
    )
    # Every read is synchronous here: the walk finishes at its first step.
    try:
        walk.send(None)
    except StopIteration as done:
        result: tuple[list[dict[str, Any]], Cursor | None] = done.value
        return result
    raise AssertionError("a local listing never waits")
