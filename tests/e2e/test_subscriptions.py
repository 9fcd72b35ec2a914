"""Kafka subscriptions end to end (DESIGN §8a): events produced to a user's topic on a real broker
run handlers in key order, exactly once, across kill -9; poison records are kept; the admin API
and CLI manage subscriptions. Every test runs on both logs (the user topic is always on Kafka)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from partition_processor.ids import subscription_invocation_id
from sdk.ports import free_port
from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.e2e.harness import ROOT, Client
from tests.support.broker import TansuBroker, unique_topic
from tests.support.kafka_events import Event, create_topic, produce

APP = "tests.e2e.apps.subscriptions:app"
KEYS = 100
EARLIEST = {"auto.offset.reset": "earliest"}
SESSION_TIMEOUT_MS = 3000


def _node_flags(bootstrap: str) -> list[str]:
    return [
        "--kafka-cluster",
        f"events={bootstrap}",
        "--cluster-session-timeout-ms",
        str(SESSION_TIMEOUT_MS),
    ]


def _start(log_kind: str, directory: Path, log_bootstrap: str | None, bootstrap: str) -> Cluster:
    return start_cluster(APP, log_kind, directory, log_bootstrap, extra=_node_flags(bootstrap))


@pytest.fixture(scope="module")
def shared_sub(
    log_kind: str,
    bootstrap: str | None,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    started = _start(log_kind, tmp_path_factory.mktemp("subs"), bootstrap, kafka_bootstrap)
    yield started
    stop_cluster(started)


@pytest.fixture
def own_sub(
    log_kind: str, bootstrap: str | None, kafka_bootstrap: str, tmp_path: Path
) -> Iterator[Cluster]:
    started = _start(log_kind, tmp_path, bootstrap, kafka_bootstrap)
    yield started
    stop_cluster(started)


@pytest.fixture
async def http(request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    name = "own_sub" if "own_sub" in request.fixturenames else "shared_sub"
    client = Client(request.getfixturevalue(name).node)
    yield client
    await client.close()


# ---------------------------------------------------------------- helpers


def _ledger_events(count: int, start: int = 0) -> list[Event]:
    """Event ``i`` carries sequence number ``i`` and the key ``k{i % KEYS}``."""
    return [
        (f"k{i % KEYS}".encode(), json.dumps({"seq": i}).encode(), ())
        for i in range(start, start + count)
    ]


def _expected(total: int) -> dict[str, list[int]]:
    expected: dict[str, list[int]] = {f"k{k}": [] for k in range(KEYS)}
    for i in range(total):
        expected[f"k{i % KEYS}"].append(i)
    return expected


async def _subscribe(
    http: Client, source: str, sink: str, options: dict[str, str] | None = None
) -> str:
    body = {"source": source, "sink": sink, "options": options or {}}
    response = await http.admin("POST", "/subscriptions", body)
    assert response.status == 201, response.body
    created = response.json()
    assert created["source"] == source and created["sink"] == sink
    subscription_id: str = created["id"]
    assert subscription_id.startswith("sub_")
    return subscription_id


async def _lists(http: Client, keys: list[str]) -> dict[str, list[int]]:
    async def one(key: str) -> list[int]:
        response = await http.call(f"/Ledger/{key}/seqs", None)
        assert response.status == 200, response.body
        seqs: list[int] = response.json()
        return seqs

    return dict(zip(keys, await asyncio.gather(*(one(k) for k in keys)), strict=True))


async def _wait_lists(
    http: Client, expected: dict[str, list[int]], timeout_s: float
) -> dict[str, list[int]]:
    """Wait until every key's list has its expected length; then return the lists."""
    total = sum(len(v) for v in expected.values())

    async def complete() -> dict[str, list[int]] | None:
        lists = await _lists(http, list(expected))
        done = sum(len(v) for v in lists.values())
        return lists if done >= total else None

    lists: dict[str, list[int]] = await http.wait_for(complete, timeout_s, interval_s=1.0)
    return lists


async def _metric(http: Client, name: str, subscription_id: str) -> float:
    response = await http.admin("GET", "/metrics")
    total = 0.0
    for line in response.body.decode().splitlines():
        if line.startswith(name) and f'subscription="{subscription_id}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------- order and exactly once


@pytest.mark.timeout(600)
async def test_backlog_subscribed_after_the_events_runs_each_once_in_key_order(
    shared_sub: Cluster, http: Client, kafka_bootstrap: str
) -> None:
    topic = unique_topic("ledger")
    await create_topic(kafka_bootstrap, topic, 4)
    total = 10_000
    await produce(kafka_bootstrap, topic, _ledger_events(total))
    sub = await _subscribe(
        http,
        f"kafka://events/{topic}",
        "service://Ledger/append",
        {"auto.offset.reset": "earliest"},
    )
    expected = _expected(total)
    lists = await _wait_lists(http, expected, timeout_s=480)
    assert lists == expected  # complete, in offset order, no duplicates
    assert await _metric(http, "cairn_subscription_records_total", sub) >= total
    await asyncio.sleep(1.0)  # nothing more arrives later (no late duplicate)
    assert await _lists(http, list(expected)) == expected


@pytest.mark.timeout(600)
async def test_kill_9_during_ingestion_loses_and_repeats_nothing(
    own_sub: Cluster, http: Client, kafka_bootstrap: str
) -> None:
    topic = unique_topic("ledger")
    await create_topic(kafka_bootstrap, topic, 4)
    await _subscribe(
        http,
        f"kafka://events/{topic}",
        "service://Ledger/append",
        {"auto.offset.reset": "earliest"},
    )
    total = 10_000
    producing = asyncio.create_task(produce(kafka_bootstrap, topic, _ledger_events(total)))

    async def some_done() -> bool:
        lists = await _lists(http, [f"k{k}" for k in range(KEYS)])
        return sum(len(v) for v in lists.values()) >= 1000

    await http.wait_for(some_done, timeout_s=240, interval_s=0.5)
    await own_sub.node.restart()  # kill -9 mid-stream, then the same data dir again
    await producing
    expected = _expected(total)
    lists = await _wait_lists(http, expected, timeout_s=480)
    assert lists == expected


@pytest.mark.timeout(300)
async def test_records_appended_before_a_crash_and_read_again_run_once(
    log_kind: str, bootstrap: str | None, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The node dies right after appending records and before committing their offset: on
    restart it reads them again; they are dropped as duplicates and still complete once (their
    in-flight slots are freed by re-attaching, with only 2 slots the topic would stall else)."""
    cluster = start_cluster(
        APP,
        log_kind,
        tmp_path,
        bootstrap,
        extra=_node_flags(kafka_bootstrap),
        env={"CAIRN_CRASH_AT": "subscription.after_append"},
    )
    http = Client(cluster.node)
    try:
        topic = unique_topic("crash")
        await create_topic(kafka_bootstrap, topic, 1)
        key = unique_topic("key")
        events: list[Event] = [
            (key.encode(), json.dumps({"seq": i}).encode(), ()) for i in range(10)
        ]
        await produce(kafka_bootstrap, topic, events)
        options = {**EARLIEST, "max.in.flight.records": "2"}
        await _subscribe(http, f"kafka://events/{topic}", "service://Ledger/append", options)
        process = cluster.node.process.process
        assert process is not None
        assert await asyncio.to_thread(process.wait, 60) == 137  # died at the crash point
        cluster.node.process.env = {**cluster.node.process.env, "CAIRN_CRASH_AT": ""}
        await asyncio.to_thread(cluster.node.start)

        async def done() -> list[int] | None:
            seqs = (await _lists(http, [key]))[key]
            return seqs if len(seqs) >= 10 else None

        assert await http.wait_for(done, 120, interval_s=0.5) == list(range(10))
        await asyncio.sleep(1.0)
        assert (await _lists(http, [key]))[key] == list(range(10))
    finally:
        await http.close()
        stop_cluster(cluster)


async def test_in_flight_records_are_bounded_for_a_slow_handler(
    shared_sub: Cluster, http: Client, kafka_bootstrap: str
) -> None:
    topic = unique_topic("slow")
    await create_topic(kafka_bootstrap, topic, 1)
    total, bound = 30, 4
    positions = await produce(
        kafka_bootstrap, topic, [(None, json.dumps(i).encode(), ()) for i in range(total)]
    )
    options = {**EARLIEST, "max.in.flight.records": str(bound)}
    sub = await _subscribe(http, f"kafka://events/{topic}", "service://Slow/work", options)
    in_flight: list[float] = []
    lags: list[float] = []
    deadline = asyncio.get_running_loop().time() + 120
    while asyncio.get_running_loop().time() < deadline:
        in_flight.append(await _metric(http, "cairn_subscription_in_flight", sub))
        lags.append(await _metric(http, "cairn_subscription_lag", sub))
        appended = await _metric(http, "cairn_subscription_records_total", sub)
        if appended >= total and in_flight[-1] == 0:
            break
        await asyncio.sleep(0.05)
    assert max(in_flight) <= bound, in_flight
    assert max(in_flight) == bound, in_flight  # the bound is what held it back
    assert max(lags) > 0, lags  # the records waiting behind the bound showed as lag
    # The web console's subscriptions page: source, sink and the lag of each source partition.
    page = await http.admin("GET", "/ui/subscriptions")
    assert page.status == 200, page.body
    text = page.body.decode()
    assert sub in text and f"kafka://events/{topic}" in text and "service://Slow/work" in text
    lag = await _metric(http, "cairn_subscription_lag", sub)
    assert f"{topic}[0]: {int(lag)}</span>" in text, text
    for partition, offset in positions:
        invocation_id = subscription_invocation_id(sub, topic, partition, offset, "Slow", None)
        status = await http.invocation(invocation_id)
        assert status["status"] == "completed", status


# ---------------------------------------------------------------- sinks, headers, poison


async def test_service_sink_sees_the_value_headers_and_record_metadata(
    shared_sub: Cluster, http: Client, kafka_bootstrap: str
) -> None:
    topic = unique_topic("echo")
    await create_topic(kafka_bootstrap, topic, 2)
    sub = await _subscribe(http, f"kafka://events/{topic}", "service://Echo/show", EARLIEST)
    events: list[Event] = [
        (None, json.dumps({"n": i}).encode(), [("trace-id", f"t{i}".encode())]) for i in range(3)
    ]
    positions = await produce(kafka_bootstrap, topic, events)
    for i, (partition, offset) in enumerate(positions):
        invocation_id = subscription_invocation_id(sub, topic, partition, offset, "Echo", None)
        response = await http.wait_for(lambda iid=invocation_id: _attached(http, iid), 60)
        result = response.json()
        assert result["event"] == {"n": i}
        headers = result["headers"]
        assert headers["trace-id"] == f"t{i}"
        assert headers["x-kafka-topic"] == topic
        assert headers["x-kafka-partition"] == str(partition)
        assert headers["x-kafka-offset"] == str(offset)
        assert int(headers["x-kafka-timestamp"]) > 0


async def test_a_raw_sink_gets_the_value_as_it_is_and_a_json_sink_only_json(
    shared_sub: Cluster, http: Client, kafka_bootstrap: str
) -> None:
    """The sink's input rules decide: bytes that are not JSON run a bytes handler as they are,
    and are kept as a failed invocation of a JSON handler."""
    topic = unique_topic("raw")
    await create_topic(kafka_bootstrap, topic, 1)
    raw_sub = await _subscribe(http, f"kafka://events/{topic}", "service://Echo/raw", EARLIEST)
    json_sub = await _subscribe(http, f"kafka://events/{topic}", "service://Echo/show", EARLIEST)
    value = b"\x00\xffnot json {"
    [(partition, offset)] = await produce(kafka_bootstrap, topic, [(None, value, [])])
    raw_id = subscription_invocation_id(raw_sub, topic, partition, offset, "Echo", None)
    response = await http.wait_for(lambda: _attached(http, raw_id), 60)
    assert response.body == value[::-1]
    json_id = subscription_invocation_id(json_sub, topic, partition, offset, "Echo", None)

    async def failed() -> Any:
        status = await http.admin("GET", f"/invocations/{json_id}")
        return status.json() if status.status == 200 else None

    status = await http.wait_for(failed, 60)
    assert status["status"] == "completed", status
    assert "is not valid JSON" in json.dumps(status)


async def _attached(http: Client, invocation_id: str) -> Any:
    """The invocation's result once it exists (404 until the consumer appended it)."""
    status = await http.admin("GET", f"/invocations/{invocation_id}")
    if status.status != 200:
        return None
    response = await http.attach(invocation_id)
    return response if response.status == 200 else None


async def test_workflow_sink_is_keyed_by_the_record_key(
    shared_sub: Cluster, http: Client, kafka_bootstrap: str
) -> None:
    topic = unique_topic("onboarding")
    await create_topic(kafka_bootstrap, topic, 2)
    await _subscribe(
        http,
        f"kafka://events/{topic}",
        "service://Onboarding/run",
        {"auto.offset.reset": "earliest"},
    )
    run = uuid_suffix()
    names = {f"alice-{run}": "Alice", f"bob-{run}": "Bob"}
    await produce(
        kafka_bootstrap,
        topic,
        [(key.encode(), json.dumps({"name": name}).encode(), ()) for key, name in names.items()],
    )
    for key, name in names.items():

        async def output(key: str = key) -> Any:
            response = await http.call(f"/restate/workflow/Onboarding/{key}/output", method="GET")
            return response if response.status == 200 else None

        result = (await http.wait_for(output, 60)).json()
        assert result["key"] == key and result["name"] == name
        assert result["headers"]["x-kafka-key"] == key
        assert result["headers"]["x-kafka-topic"] == topic


def uuid_suffix() -> str:
    return unique_topic("r")


async def test_poison_records_are_kept_as_failed_and_the_next_ones_run(
    shared_sub: Cluster, http: Client, kafka_bootstrap: str
) -> None:
    topic = unique_topic("poison")
    await create_topic(kafka_bootstrap, topic, 1)
    sub = await _subscribe(
        http,
        f"kafka://events/{topic}",
        "service://Ledger/append",
        {"auto.offset.reset": "earliest"},
    )
    key = unique_topic("key")
    events: list[Event] = [
        (key.encode(), b'{"seq": 1}', ()),
        (None, b'{"seq": 2}', ()),  # a keyed sink without a key
        (key.encode(), b"{not json", ()),  # a value that does not decode
        (key.encode(), b'{"seq": 4}', ()),
    ]
    positions = await produce(kafka_bootstrap, topic, events)

    async def done() -> list[int] | None:
        seqs = (await _lists(http, [key]))[key]
        return seqs if len(seqs) >= 2 else None

    assert await http.wait_for(done, 60) == [1, 4]
    no_key = subscription_invocation_id(sub, topic, *positions[1], "Ledger", None)
    not_json = subscription_invocation_id(sub, topic, *positions[2], "Ledger", key)
    for invocation_id, reason in ((no_key, "has no key"), (not_json, "not valid JSON")):
        status = await http.invocation(invocation_id)
        assert status["status"] == "completed", status
        failure = json.dumps(status)
        assert reason in failure, status
    # Every page of the listing: the shared node holds thousands of completed invocations.
    listed_ids: set[str] = set()
    cursor: str | None = ""
    while cursor is not None:
        query = {"status": "completed", "limit": "1000"} | ({"cursor": cursor} if cursor else {})
        page = (await http.admin("GET", f"/invocations?{urllib.parse.urlencode(query)}")).json()
        listed_ids |= {row["id"] for row in page["invocations"]}
        cursor = page["next"]
    assert {no_key, not_json} <= listed_ids
    assert await _metric(http, "cairn_subscription_records_rejected_total", sub) == 2
    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "runtime.cli", "invocations", "list", "--admin", http.node.admin],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert no_key in cli.stdout and not_json in cli.stdout


# ---------------------------------------------------------------- lifecycle and admin


async def test_latest_skips_what_was_produced_before(
    shared_sub: Cluster, http: Client, kafka_bootstrap: str
) -> None:
    topic = unique_topic("latest")
    await create_topic(kafka_bootstrap, topic, 1)
    key = unique_topic("key")
    # several records in one batch: the case the test broker answers wrongly (DESIGN §10)
    await produce(kafka_bootstrap, topic, [(key.encode(), b'{"seq": 0}', ())] * 5)
    sub = await _subscribe(http, f"kafka://events/{topic}", "service://Ledger/append")

    async def positioned() -> bool:
        return any(
            line.startswith("cairn_subscription_lag{") and f'subscription="{sub}"' in line
            for line in (await http.admin("GET", "/metrics")).body.decode().splitlines()
        )

    await http.wait_for(positioned, 60)
    await produce(kafka_bootstrap, topic, [(key.encode(), b'{"seq": 1}', ())] * 3)

    async def done() -> list[int] | None:
        seqs = (await _lists(http, [key]))[key]
        return seqs if len(seqs) >= 3 else None

    assert await http.wait_for(done, 60) == [1, 1, 1]


async def test_delete_stops_consumption(
    shared_sub: Cluster, http: Client, kafka_bootstrap: str
) -> None:
    topic = unique_topic("deleted")
    await create_topic(kafka_bootstrap, topic, 2)
    sub = await _subscribe(
        http,
        f"kafka://events/{topic}",
        "service://Ledger/append",
        {"auto.offset.reset": "earliest"},
    )
    key = unique_topic("key")
    await produce(kafka_bootstrap, topic, [(key.encode(), b'{"seq": 1}', ())] * 5)

    async def five() -> bool:
        return len((await _lists(http, [key]))[key]) == 5

    await http.wait_for(five, 60)
    assert (await http.admin("DELETE", f"/subscriptions/{sub}")).status == 202
    assert (await http.admin("GET", f"/subscriptions/{sub}")).status == 404
    await asyncio.sleep(3.0)  # the consumer stops within seconds
    await produce(kafka_bootstrap, topic, [(key.encode(), b'{"seq": 2}', ())] * 5)
    await asyncio.sleep(6.0)  # a running consumer would have handled them by now
    assert (await _lists(http, [key]))[key] == [1] * 5


async def test_bad_subscription_requests_are_refused_with_the_reason(
    shared_sub: Cluster, http: Client
) -> None:
    topic = unique_topic("bad")
    cases: list[tuple[Any, int, str]] = [
        ({"source": f"kafka://nowhere/{topic}", "sink": "service://Ledger/append"}, 404, "cluster"),
        ({"source": f"kafka://events/{topic}", "sink": "service://Nope/append"}, 404, "Nope"),
        ({"source": f"kafka://events/{topic}", "sink": "service://Ledger/nope"}, 404, "nope"),
        ({"source": f"kafka://events/{topic}", "sink": "service://Ledger/seqs"}, 400, "shared"),
        ({"source": f"http://events/{topic}", "sink": "service://Ledger/append"}, 400, "kafka://"),
        ({"source": "kafka://events/", "sink": "service://Ledger/append"}, 400, "kafka://"),
        ({"source": f"kafka://events/{topic}", "sink": "Ledger/append"}, 400, "service://"),
        (
            {
                "source": f"kafka://events/{topic}",
                "sink": "service://Ledger/append",
                "options": {"auto.offset.reset": "sometimes"},
            },
            400,
            "auto.offset.reset",
        ),
        (
            {
                "source": f"kafka://events/{topic}",
                "sink": "service://Ledger/append",
                "options": {"max.in.flight.records": "0"},
            },
            400,
            "max.in.flight.records",
        ),
        (
            {
                "source": f"kafka://events/{topic}",
                "sink": "service://Ledger/append",
                "options": {"group.id": "x"},
            },
            400,
            "unknown option",
        ),
        ({"sink": "service://Ledger/append"}, 400, "source"),
    ]
    for body, status, reason in cases:
        response = await http.admin("POST", "/subscriptions", body)
        assert response.status == status, (body, response.body)
        error = response.json()
        assert error["code"] == status and reason in error["message"], (body, error)
    raw = await http.request("POST", f"{http.node.admin}/subscriptions", raw=b"{nope")
    assert raw.status == 400 and "JSON" in raw.json()["message"]
    assert (await http.admin("GET", "/subscriptions/sub_nope")).status == 404
    assert (await http.admin("DELETE", "/subscriptions/sub_nope")).status == 404
    # nothing was stored by the refused requests
    listed = (await http.admin("GET", "/subscriptions")).json()["subscriptions"]
    assert not [s for s in listed if topic in s["source"]]


async def test_cli_adds_lists_filters_and_removes(shared_sub: Cluster, http: Client) -> None:
    topic = unique_topic("cli")
    source = f"kafka://events/{topic}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "runtime.cli", "subscriptions", *args]
        return subprocess.run(
            [*argv, "--admin", http.node.admin], cwd=ROOT, capture_output=True, text=True
        )

    added = await asyncio.to_thread(
        cli, "add", source, "service://Ledger/append", "--option", "auto.offset.reset=earliest"
    )
    assert added.returncode == 0, added.stderr
    sub = added.stdout.split()[0]
    again = await asyncio.to_thread(cli, "add", source, "service://Ledger/append")
    assert again.returncode != 0 and "409" in again.stderr and sub in again.stderr
    listing = await asyncio.to_thread(cli, "list")
    assert sub in listing.stdout and "auto.offset.reset=earliest" in listing.stdout
    as_json = await asyncio.to_thread(cli, "list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    listed = (await http.admin("GET", "/subscriptions")).json()["subscriptions"]
    assert json.loads(as_json.stdout) == listed and sub in {s["id"] for s in listed}
    by_source = await http.admin("GET", f"/subscriptions?source={source}")
    assert [s["id"] for s in by_source.json()["subscriptions"]] == [sub]
    by_sink = await http.admin("GET", "/subscriptions?sink=service://Echo/show")
    assert sub not in {s["id"] for s in by_sink.json()["subscriptions"]}
    got = (await http.admin("GET", f"/subscriptions/{sub}")).json()
    assert got["options"] == {"auto.offset.reset": "earliest", "max.in.flight.records": "1000"}
    removed = await asyncio.to_thread(cli, "remove", sub, "--json")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout) == {"id": sub, "removed": True}
    assert (await http.admin("GET", f"/subscriptions/{sub}")).status == 404
    gone = await asyncio.to_thread(cli, "remove", sub)
    assert gone.returncode != 0 and "404" in gone.stderr


async def test_the_orders_example_runs_as_documented(
    log_kind: str, bootstrap: str | None, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """examples/orders.py fed by examples/produce_orders.py, subscribed as its docstring says."""
    cluster = start_cluster(
        "examples.orders:app", log_kind, tmp_path, bootstrap, extra=_node_flags(kafka_bootstrap)
    )
    http = Client(cluster.node)
    try:
        topic = unique_topic("orders")
        producer = [sys.executable, "-m", "examples.produce_orders", "--bootstrap"]
        producer += [kafka_bootstrap, "--topic", topic, "--count", "20"]
        done = await asyncio.to_thread(
            subprocess.run, producer, cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        await _subscribe(http, f"kafka://events/{topic}", "service://Orders/place", EARLIEST)

        async def history() -> Any:
            response = await http.call("/Orders/alice/history")
            rows = response.json()
            return rows if len(rows) >= 5 else None

        rows = await http.wait_for(history, 60)
        assert [row["item"] for row in rows] == [f"item-{i}" for i in range(0, 20, 4)]
        assert all(row["offset"].startswith(f"{topic}/") for row in rows)
    finally:
        await http.close()
        stop_cluster(cluster)


@pytest.mark.timeout(300)
async def test_a_consumer_whose_broker_is_down_retries_until_it_is_up(
    log_kind: str, bootstrap: str | None, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The consumer is the supervised task ``subscription-<id>``: it fails, is logged, counted
    and restarted with backoff; health stays 200 but names it; it consumes once the broker is
    up."""
    late_port = free_port()
    flags = [*_node_flags(kafka_bootstrap), "--kafka-cluster", f"late=127.0.0.1:{late_port}"]
    cluster = start_cluster(APP, log_kind, tmp_path, bootstrap, extra=flags)
    http = Client(cluster.node)
    broker: TansuBroker | None = None
    try:
        topic = unique_topic("late")
        sub = await _subscribe(http, f"kafka://late/{topic}", "service://Ledger/append", EARLIEST)
        task = f"subscription-{sub}"

        async def reported() -> list[Any] | None:
            health = await http.call("/restate/health", method="GET")
            assert health.status == 200, health.body  # not a task health depends on
            tasks = health.json().get("tasks", [])
            return tasks if any(t["name"] == task for t in tasks) else None

        tasks = await http.wait_for(reported, 60, interval_s=0.2)
        assert next(t for t in tasks if t["name"] == task)["reason"].startswith(
            "subscription restarting after"
        )
        admin_health = await http.admin("GET", "/health")
        assert admin_health.status == 200, admin_health.body

        async def restarted() -> float | None:
            text = (await http.admin("GET", "/metrics")).body.decode()
            metric = r'^cairn_task_restarts_total\{task="subscription"\} (\S+)$'
            match = re.search(metric, text, re.M)
            return float(match.group(1)) if match and float(match.group(1)) >= 2 else None

        await http.wait_for(restarted, 60, interval_s=0.5)
        output = cluster.node.process.output()
        assert f"task {task} failed" in output and "restarting in" in output
        broker = await asyncio.to_thread(TansuBroker.start, tmp_path, late_port)
        await create_topic(broker.bootstrap, topic, 1)
        key = unique_topic("key")
        await produce(broker.bootstrap, topic, [(key.encode(), b'{"seq": 7}', ())])

        async def done() -> list[int] | None:
            seqs = (await _lists(http, [key]))[key]
            return seqs or None

        assert await http.wait_for(done, 120, interval_s=0.5) == [7]
    finally:
        await http.close()
        stop_cluster(cluster)
        if broker is not None:
            broker.stop()
