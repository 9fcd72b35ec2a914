"""Snapshot repositories on a real directory and a real local S3 server (moto)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.snapshots.repository import (
    FileRepository,
    Repository,
    RepositoryError,
    S3Repository,
    SnapshotRef,
    open_repository,
)
from tests.support.s3 import S3Server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["file", "s3"])
async def repository(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Repository]:
    if request.param == "file":
        repo = open_repository(f"file://{tmp_path}/snaps")
        assert isinstance(repo, FileRepository)
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        repo = open_repository(f"s3://{server.bucket()}/cluster-a/snaps")
        assert isinstance(repo, S3Repository)
    yield repo
    await repo.close()


async def test_put_get_round_trip_and_listing_newest_first(repository: Repository) -> None:
    assert await repository.list() == []
    assert await repository.list(3) == []
    for lsn in (10, 250, 99):
        await repository.put(3, lsn, b"p3@%d" % lsn)
    await repository.put(1, 7, b"p1@7")
    refs = await repository.list(3)
    assert [r.applied_lsn for r in refs] == [250, 99, 10]
    assert all(r.partition == 3 and r.size == len(b"p3@%d" % r.applied_lsn) for r in refs)
    assert await repository.get(refs[0]) == b"p3@250"
    everything = await repository.list()
    assert [(r.partition, r.applied_lsn) for r in everything] == [
        (1, 7),
        (3, 250),
        (3, 99),
        (3, 10),
    ]


async def test_put_at_the_same_position_replaces(repository: Repository) -> None:
    await repository.put(0, 5, b"first")
    await repository.put(0, 5, b"second, longer")
    [ref] = await repository.list(0)
    assert await repository.get(ref) == b"second, longer"


async def test_prune_keeps_the_newest_two_per_partition(repository: Repository) -> None:
    for lsn in (1, 2, 3, 4):
        await repository.put(0, lsn, b"x")
        await repository.put(1, lsn, b"y")
    deleted = await repository.prune(0)
    assert sorted(r.applied_lsn for r in deleted) == [1, 2]
    assert [r.applied_lsn for r in await repository.list(0)] == [4, 3]
    assert [r.applied_lsn for r in await repository.list(1)] == [4, 3, 2, 1]  # untouched


async def test_delete_is_idempotent_and_get_of_a_missing_one_fails(
    repository: Repository,
) -> None:
    ref = await repository.put(2, 8, b"z")
    await repository.delete(ref)
    await repository.delete(ref)
    assert await repository.list(2) == []
    with pytest.raises(RepositoryError):
        await repository.get(SnapshotRef(2, 8, ref.name, 0))


async def test_file_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    repo = FileRepository(tmp_path)
    await repo.put(0, 1, b"a" * 1000)
    assert [p.name for p in (tmp_path / "p00000").iterdir()] == ["00000000000000000001.snap"]
    (tmp_path / "p00000" / ".00000000000000000002.snap.abc.tmp").write_bytes(b"partial")
    assert [r.applied_lsn for r in await repo.list(0)] == [1]  # a crashed write is not listed


def test_malformed_urls_are_refused() -> None:
    for url in ("http://x/y", "file://relative/dir", "s3://", "snapshots"):
        with pytest.raises(ValueError):
            open_repository(url)


async def test_an_unreachable_s3_store_is_a_repository_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    repo = S3Repository("bucket", "p", "http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(RepositoryError):
        await repo.list(0)
