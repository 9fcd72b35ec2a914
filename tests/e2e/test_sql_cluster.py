"""SQL introspection on a two-node cluster (Kafka): either node answers for every partition,
whichever node the rows were written through and whichever leads their partitions, as JSON and
as Arrow."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from partition_processor.ids import object_partition_key, partition_of
from tests.e2e.harness import Client
from tests.e2e.test_cluster import PARTITIONS, TwoNodes, _leads_all_between, two_nodes
from tests.e2e.test_sql import as_json_values, query_arrow

APP = "tests.e2e.apps.introspection:app"


@pytest.fixture
def nodes(tmp_path: Path, kafka_bootstrap: str) -> Iterator[TwoNodes]:
    with two_nodes(APP, tmp_path, kafka_bootstrap, "sqlcluster") as started:
        yield started


@pytest.fixture
async def clients(nodes: TwoNodes) -> AsyncIterator[tuple[Client, Client]]:
    a, b = Client(nodes.a), Client(nodes.b)
    await a.register(nodes.endpoint)
    await a.wait_for(lambda: _leads_all_between(a, b))
    yield a, b
    await a.close()
    await b.close()


async def _query(client: Client, sql: str) -> list[dict[str, Any]]:
    response = await client.admin("POST", "/query", {"query": sql})
    assert response.status == 200, response.body
    rows: list[dict[str, Any]] = response.json()["rows"]
    return rows


def _keys_on_every_partition(tag: str) -> list[str]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < PARTITIONS:
        key = f"{tag}-{n}"
        found.setdefault(partition_of(object_partition_key("Counter", key), PARTITIONS), key)
        n += 1
    return [found[p] for p in range(PARTITIONS)]


async def test_either_node_answers_for_every_partition(
    clients: tuple[Client, Client],
) -> None:
    a, b = clients
    tag = uuid.uuid4().hex[:8]
    keys = _keys_on_every_partition(tag)
    for n, key in enumerate(keys):
        writer = a if n % 2 == 0 else b  # through both ingresses
        response = await writer.call(f"/Counter/{key}/add", n + 1)
        assert response.status == 200, response.body
    query = (
        "SELECT s.partition, s.key, s.value, i.status FROM state s JOIN sys_invocation i "
        f"ON i.key = s.key AND i.service = s.service WHERE s.key LIKE '{tag}-%' ORDER BY s.key"
    )
    want = sorted(
        (
            {
                "partition": partition_of(object_partition_key("Counter", key), PARTITIONS),
                "key": key,
                "value": n + 1,
                "status": "completed",
            }
            for n, key in enumerate(keys)
        ),
        key=lambda row: str(row["key"]),
    )

    async def answered(client: Client) -> bool:
        return await _query(client, query) == want

    for client in (a, b):
        await client.wait_for(lambda c=client: answered(c))  # type: ignore[misc]
    assert {row["partition"] for row in want} == set(range(PARTITIONS))
    # Arrow from either node holds every partition's rows (the query runs once over the rows
    # the peers sent), equal to the JSON rows: ints, strings, timestamps and nulls.
    typed = (
        "SELECT s.partition, s.key, i.status, epoch_ms(i.created_ms) AS created, "
        "i.last_failure_code FROM state s JOIN sys_invocation i ON i.key = s.key "
        f"AND i.service = s.service WHERE s.key LIKE '{tag}-%' ORDER BY s.key"
    )
    for client in (a, b):
        rows = await _query(client, typed)
        assert {row["partition"] for row in rows} == set(range(PARTITIONS))
        assert all(row["last_failure_code"] is None for row in rows)
        assert as_json_values(await query_arrow(client, typed)) == rows
    refused = await b.admin("POST", "/query", {"query": "SELECT * FROM nowhere"})
    assert refused.status == 400 and "nowhere" in refused.json()["message"]
