"""Compaction of the embedded metadata log at start (README "Kafka", metadata that stays small).

Kafka compacts the metadata topic itself. The embedded log (``--log local``) has no compaction,
so a node rewrites its metadata log at start, before it opens it, when most of its records are
superseded: it keeps the last record of each key (``metadata_key``), in log order, which gives
the same registry as the whole history. Nothing refers to a metadata LSN across a restart (the
registry follows the log from its start), so the new numbering is safe.

The rewrite is crash safe: the compacted copy is written and closed in ``<dir>.compacting``,
then the old directory is renamed to ``<dir>.old`` and the copy into place, then the old one is
deleted. A start after a crash finishes or undoes whichever step was interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

import msgspec

from runtime.log import LocalLog, LogRecord
from runtime.metadata import decode_metadata, metadata_key

log = logging.getLogger(__name__)

# Compact only a log with at least this many records, of which at most half would be kept: a
# small log costs nothing to replay, and a rewrite that saves little is not worth its I/O.
MIN_RECORDS = 1000
_APPEND_CHUNK = 256


def _siblings(directory: Path) -> tuple[Path, Path]:
    return (
        directory.with_name(directory.name + ".compacting"),
        directory.with_name(directory.name + ".old"),
    )


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(directory: Path) -> bool:
    """Finish or undo a rewrite that a crash interrupted; whether the log exists now."""
    staging, old = _siblings(directory)
    if old.exists() and not directory.exists():
        # Crashed between the two renames: the staged copy was complete before the first one.
        os.rename(staging if staging.exists() else old, directory)
        _fsync_directory(directory.parent)
    if old.exists():
        shutil.rmtree(old)
    if staging.exists():
        shutil.rmtree(staging)  # an unfinished copy: the original is intact
    return directory.exists()


def compacted(records: list[bytes]) -> list[bytes]:
    """The last record of each key, in log order (undecodable records are dropped: the
    registry skips them anyway)."""
    last: dict[bytes, int] = {}
    for index, payload in enumerate(records):
        try:
            last[metadata_key(decode_metadata(payload))] = index
        except msgspec.DecodeError:
            continue
    return [records[index] for index in sorted(last.values())]


async def compact_local_metadata(directory: Path, *, min_records: int = MIN_RECORDS) -> bool:
    """Rewrite the metadata log in ``directory`` if that saves most of it; True if it did."""
    if not await asyncio.to_thread(recover, directory):
        return False
    source = LocalLog(directory, 1)
    await source.start()
    try:
        tail = await source.tail(0)
        if tail - await source.first_lsn(0) < min_records:
            return False
        records = await _read_all(source, tail)
    finally:
        await source.close()
    kept = compacted(records)
    if len(kept) > len(records) // 2:
        return False
    staging, old = _siblings(directory)
    copy = LocalLog(staging, 1)
    await copy.start()
    try:
        for start in range(0, len(kept), _APPEND_CHUNK):
            await copy.append(0, kept[start : start + _APPEND_CHUNK])
    finally:
        await copy.close()
    await asyncio.to_thread(_swap, directory, staging, old)
    log.info("metadata log compacted at start: %d records kept of %d", len(kept), len(records))
    return True


def _swap(directory: Path, staging: Path, old: Path) -> None:
    os.rename(directory, old)
    os.rename(staging, directory)
    _fsync_directory(directory.parent)
    shutil.rmtree(old)


async def _read_all(source: LocalLog, tail: int) -> list[bytes]:
    records: list[LogRecord] = []
    if tail == 0:
        return []
    reader = source.read(0, await source.first_lsn(0))
    try:
        async for batch in reader:
            records.extend(batch)
            if records[-1].lsn >= tail - 1:
                break
    finally:
        await reader.aclose()  # type: ignore[attr-defined]
    return [r.payload for r in records]
