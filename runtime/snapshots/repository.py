"""Snapshot repositories: where snapshot files live (``file:///dir`` or ``s3://bucket/prefix``).

A snapshot of partition P at applied LSN L is the object ``p{P:05d}/{L:020d}.snap``: names sort
by position, so listing a partition's prefix gives its snapshots in order without reading them.
Writes are atomic: a temporary file renamed into place (file), a single PUT (S3). Readers never
see a partial snapshot under its final name; damage after the fact is caught by the checksum.
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import logging
import os
import uuid
from pathlib import Path
from urllib.parse import urlparse

import msgspec

from runtime.log.segments import sync_dir

log = logging.getLogger(__name__)

SUFFIX = ".snap"
KEEP_PER_PARTITION = 2


class RepositoryError(Exception):
    """The repository could not be reached or an object could not be read or written."""


class SnapshotRef(msgspec.Struct, frozen=True, order=True):
    """One stored snapshot, known from its name alone."""

    partition: int
    applied_lsn: int
    name: str
    size: int


def object_name(partition: int, applied_lsn: int) -> str:
    return f"p{partition:05d}/{applied_lsn:020d}{SUFFIX}"


def partition_dir(partition: int) -> str:
    return f"p{partition:05d}/"


def parse_name(name: str, size: int) -> SnapshotRef | None:
    """The ref of an object name of this layout; None for anything else (temp files, strays)."""
    directory, _, file = name.rpartition("/")
    directory = directory.rpartition("/")[2]
    stem = file.removesuffix(SUFFIX)
    if not (
        file.endswith(SUFFIX)
        and directory.startswith("p")
        and directory[1:].isdigit()
        and stem.isdigit()
    ):
        return None
    return SnapshotRef(int(directory[1:]), int(stem), f"{directory}/{file}", size)


class Repository(abc.ABC):
    """Where snapshots are put, listed, fetched and pruned."""

    url: str

    @abc.abstractmethod
    async def put(self, partition: int, applied_lsn: int, data: bytes) -> SnapshotRef:
        """Store a snapshot atomically (replacing one at the same position)."""

    @abc.abstractmethod
    async def list(self, partition: int | None = None) -> list[SnapshotRef]:
        """Snapshots of ``partition`` (or of every partition), newest first per partition."""

    @abc.abstractmethod
    async def get(self, ref: SnapshotRef) -> bytes:
        """The snapshot's bytes (``RepositoryError`` if it is gone)."""

    @abc.abstractmethod
    async def delete(self, ref: SnapshotRef) -> None:
        """Remove a snapshot; removing one that is gone is not an error."""

    async def close(self) -> None:  # noqa: B027 - most repositories hold nothing to release
        """Release connections."""

    async def prune(
        self, partition: int, keep: int = KEEP_PER_PARTITION
    ) -> builtins.list[SnapshotRef]:
        """Delete all but the newest ``keep`` snapshots of ``partition``; return the deleted."""
        doomed = (await self.list(partition))[keep:]
        for ref in doomed:
            await self.delete(ref)
        return doomed


def _newest_first(refs: list[SnapshotRef]) -> list[SnapshotRef]:
    return sorted(refs, key=lambda r: (r.partition, -r.applied_lsn))


class FileRepository(Repository):
    """Snapshots as files under a directory (a shared mount for a cluster)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    async def put(self, partition: int, applied_lsn: int, data: bytes) -> SnapshotRef:
        name = object_name(partition, applied_lsn)
        try:
            await asyncio.to_thread(self._put_sync, name, data)
        except OSError as exc:
            raise RepositoryError(f"cannot write {self.root / name}: {exc}") from exc
        return SnapshotRef(partition, applied_lsn, name, len(data))

    def _put_sync(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # A unique temp name: two nodes may write the same position at once.
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_dir(path.parent)

    async def list(self, partition: int | None = None) -> list[SnapshotRef]:
        try:
            return await asyncio.to_thread(self._list_sync, partition)
        except OSError as exc:
            raise RepositoryError(f"cannot list {self.root}: {exc}") from exc

    def _list_sync(self, partition: int | None) -> builtins.list[SnapshotRef]:
        if not self.root.is_dir():
            return []
        dirs = (
            [self.root / partition_dir(partition)]
            if partition is not None
            else [d for d in self.root.iterdir() if d.is_dir()]
        )
        refs: list[SnapshotRef] = []
        for directory in dirs:
            if not directory.is_dir():
                continue
            for entry in os.scandir(directory):
                ref = parse_name(f"{directory.name}/{entry.name}", 0)
                if ref is not None:
                    refs.append(msgspec.structs.replace(ref, size=entry.stat().st_size))
        return _newest_first(refs)

    async def get(self, ref: SnapshotRef) -> bytes:
        try:
            return await asyncio.to_thread((self.root / ref.name).read_bytes)
        except OSError as exc:
            raise RepositoryError(f"cannot read {self.root / ref.name}: {exc}") from exc

    async def delete(self, ref: SnapshotRef) -> None:
        try:
            await asyncio.to_thread((self.root / ref.name).unlink, True)
        except OSError as exc:
            raise RepositoryError(f"cannot delete {self.root / ref.name}: {exc}") from exc


class S3Repository(Repository):
    """Snapshots as objects in an S3-compatible store, through obstore (async, Rust-backed).

    Credentials and region come from the usual ``AWS_*`` environment variables; ``endpoint``
    (``--snapshot-s3-endpoint`` or ``AWS_ENDPOINT_URL``) points at a non-AWS store such as MinIO
    or a local test server; plain ``http://`` endpoints are allowed.
    """

    def __init__(self, bucket: str, prefix: str, endpoint: str | None) -> None:
        from obstore.store import S3Store

        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        self._prefix = prefix.strip("/")
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
        config: dict[str, str] = {}
        if endpoint:
            config["endpoint"] = endpoint
        if not os.environ.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
            config["region"] = "us-east-1"
        self._store = S3Store(
            bucket,
            prefix=self._prefix or None,
            client_options={"allow_http": bool(endpoint and endpoint.startswith("http://"))},
            **config,  # type: ignore[arg-type]
        )

    async def put(self, partition: int, applied_lsn: int, data: bytes) -> SnapshotRef:
        import obstore

        name = object_name(partition, applied_lsn)
        try:
            await obstore.put_async(self._store, name, data)
        except Exception as exc:  # obstore raises its own hierarchy; all mean "not stored"
            raise RepositoryError(f"cannot put {self.url}/{name}: {exc}") from exc
        return SnapshotRef(partition, applied_lsn, name, len(data))

    async def list(self, partition: int | None = None) -> list[SnapshotRef]:
        import obstore

        refs: list[SnapshotRef] = []
        prefix = partition_dir(partition) if partition is not None else None
        try:
            async for batch in obstore.list(self._store, prefix):
                for meta in batch:
                    ref = parse_name(str(meta["path"]), int(meta["size"]))
                    if ref is not None:
                        refs.append(ref)
        except Exception as exc:
            raise RepositoryError(f"cannot list {self.url}: {exc}") from exc
        return _newest_first(refs)

    async def get(self, ref: SnapshotRef) -> bytes:
        import obstore

        try:
            result = await obstore.get_async(self._store, ref.name)
            return bytes(await result.bytes_async())
        except Exception as exc:
            raise RepositoryError(f"cannot get {self.url}/{ref.name}: {exc}") from exc

    async def delete(self, ref: SnapshotRef) -> None:
        import obstore

        try:
            await obstore.delete_async(self._store, ref.name)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise RepositoryError(f"cannot delete {self.url}/{ref.name}: {exc}") from exc


def open_repository(url: str, *, s3_endpoint: str | None = None) -> Repository:
    """The repository a ``--snapshot-repository`` URL names (``ValueError`` if malformed)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise ValueError(f"expected file:///absolute/dir, got {url!r}")
        return FileRepository(Path(parsed.path))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"expected s3://bucket[/prefix], got {url!r}")
        return S3Repository(parsed.netloc, parsed.path.strip("/"), s3_endpoint)
    raise ValueError(f"unsupported snapshot repository {url!r}: use file:///dir or s3://bucket/p")
