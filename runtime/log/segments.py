"""Segment files of the embedded log: the frame format, the blocking file operations on
segments, and opening a log directory (lock, meta.json, recovery). ``LocalLog`` runs opening,
recovery and reads in worker threads; a commit round's writes on the event loop (page-cache
copies), its fsyncs in the fsync process (``runtime.log.syncers``).

A segment is a run of frames ``[u32 length][u32 crc][payload]`` (big-endian). The CRC covers the
length field as well as the payload, so a zero-filled tail (a crash after the file grew but before
the data landed) is not mistaken for empty records. A segment is named by its first LSN.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

from runtime.log.base import LogError
from runtime.log.fsync_helper import sync

_log = logging.getLogger(__name__)

HEADER = struct.Struct(">II")
_LENGTH = struct.Struct(">I")
RECORD_BYTES_MAX = 2**32 - 1
SEGMENT_SUFFIX = ".seg"
# The layout version in a log directory's meta.json.
_FORMAT = 1


def frame_crc(payload: bytes | memoryview, length: int) -> int:
    return zlib.crc32(payload, zlib.crc32(_LENGTH.pack(length)))


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), frame_crc(payload, len(payload))) + payload


@dataclass(eq=False)
class Segment:
    """One segment file. ``positions``/``size`` cover durable frames only (mutated on the loop)."""

    base_lsn: int
    path: Path
    positions: array[int]
    size: int
    # Write descriptor of the active segment; touched only by the writer task's rounds and close().
    wfd: int | None = None

    def end_of(self, index: int) -> int:
        """File offset just after record ``index - 1`` of this segment."""
        return self.positions[index] if index < len(self.positions) else self.size


def write_fd(seg: Segment) -> int:
    if seg.wfd is None:
        raise LogError(f"segment {seg.path} is not open for writing")
    return seg.wfd


def write_all(fd: int, chunks: list[bytes]) -> None:
    data = memoryview(b"".join(chunks))
    while data:
        data = data[os.write(fd, data) :]


def sync_dir(path: Path) -> None:
    """Make a created/deleted directory entry durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_segment_sync(directory: Path, base_lsn: int) -> Segment:
    path = directory / f"{base_lsn:020d}{SEGMENT_SUFFIX}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
    sync_dir(directory)
    return Segment(base_lsn=base_lsn, path=path, positions=array("q"), size=0, wfd=fd)


def open_partition_sync(directory: Path) -> list[Segment]:
    """Index every segment of a partition; truncate a torn tail of the last one."""
    directory.mkdir(exist_ok=True)
    files = sorted(
        (int(p.name.removesuffix(SEGMENT_SUFFIX)), p)
        for p in directory.iterdir()
        if p.name.endswith(SEGMENT_SUFFIX) and p.name.removesuffix(SEGMENT_SUFFIX).isdigit()
    )
    if not files:
        return [create_segment_sync(directory, 0)]
    segments: list[Segment] = []
    for i, (base_lsn, path) in enumerate(files):
        if segments and base_lsn != segments[-1].base_lsn + len(segments[-1].positions):
            raise LogError(f"{path} does not start where the previous segment ends")
        positions, good_size, file_size = scan_segment_sync(path)
        if good_size != file_size:
            if i != len(files) - 1:
                raise LogError(f"{path} is corrupt at byte {good_size} (not the active segment)")
            _log.warning("truncating %d torn bytes at the end of %s", file_size - good_size, path)
            os.truncate(path, good_size)
        segments.append(Segment(base_lsn, path, positions, good_size))
    last = segments[-1]
    fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)
    try:
        sync(fd)  # make a truncation durable before anything is appended after it
    except BaseException:
        os.close(fd)
        raise
    last.wfd = fd
    return segments


def scan_segment_sync(path: Path) -> tuple[array[int], int, int]:
    """Offsets of the valid frames, the end of the last valid frame, and the file size."""
    positions: array[int] = array("q")
    pos = 0
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        while pos + HEADER.size <= file_size:
            length, crc = HEADER.unpack(f.read(HEADER.size))
            if pos + HEADER.size + length > file_size:
                break
            payload = f.read(length)
            if len(payload) != length or frame_crc(payload, length) != crc:
                break
            positions.append(pos)
            pos += HEADER.size + length
    return positions, pos, file_size


def read_frames_sync(path: Path, offset: int, length: int, count: int) -> list[bytes]:
    """Worker thread: read ``count`` frames occupying ``length`` bytes at ``offset``."""
    with open(path, "rb", buffering=0) as f:
        data = memoryview(os.pread(f.fileno(), length, offset))
    payloads: list[bytes] = []
    pos = 0
    for _ in range(count):
        if pos + HEADER.size > len(data):
            raise LogError(f"{path}: short read at byte {offset + pos}")
        size, crc = HEADER.unpack_from(data, pos)
        payload = data[pos + HEADER.size : pos + HEADER.size + size]
        if len(payload) != size or frame_crc(payload, size) != crc:
            raise LogError(f"{path}: corrupt frame at byte {offset + pos}")
        payloads.append(bytes(payload))
        pos += HEADER.size + size
    return payloads


def delete_segments_sync(directory: Path, segments: list[Segment]) -> None:
    for seg in segments:
        seg.path.unlink(missing_ok=True)
    sync_dir(directory)


def open_directory_sync(directory: Path, partitions: int) -> tuple[int, list[list[Segment]]]:
    """Lock a log directory, check (or write) its meta.json, recover every partition.

    Returns the lock's fd (closing it releases the flock) and each partition's segments.
    """
    directory.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    opened: list[list[Segment]] = []
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LogError(f"{directory} is already open by another LocalLog") from exc
        _check_meta_sync(directory, partitions)
        for i in range(partitions):
            opened.append(open_partition_sync(directory / f"p{i:04d}"))
        return lock_fd, opened
    except BaseException:
        for segments in opened:
            os.close(write_fd(segments[-1]))
        os.close(lock_fd)
        raise


def _check_meta_sync(directory: Path, partitions: int) -> None:
    meta_path = directory / "meta.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise LogError(f"{meta_path} is not valid JSON") from exc
        if meta.get("format") != _FORMAT:
            raise LogError(f"{meta_path}: unsupported format {meta.get('format')!r}")
        if (found := meta.get("partitions")) != partitions:
            raise LogError(f"{directory} has {found} partitions, not {partitions}")
        return
    tmp = meta_path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump({"format": _FORMAT, "partitions": partitions}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, meta_path)
    sync_dir(directory)
