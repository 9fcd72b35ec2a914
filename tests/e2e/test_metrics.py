"""``GET /metrics`` under a workload: every family of README "Metrics" moves between a scrape
before and one after, and every metric the Grafana dashboard (deploy/grafana/cairn.json) uses
is exported by a real node."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import Client

APP = "tests.e2e.apps.introspection:app"
pytestmark = pytest.mark.usefixtures("shared")
DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "cairn.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


async def _exported(client: Client) -> set[str]:
    """The series names /metrics exports, a labelled family with no series yet included (its
    HELP and TYPE lines are there)."""
    response = await client.admin("GET", "/metrics")
    assert response.status == 200, response.body
    return {
        family.name + suffix
        for family in text_string_to_metric_families(response.body.decode())
        for suffix in _SUFFIXES.get(family.type, ("",))
    }


async def _scrape(client: Client) -> Samples:
    response = await client.admin("GET", "/metrics")
    assert response.status == 200, response.body
    samples: Samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def _workload(client: Client, tag: str) -> None:
    for n in range(3):
        response = await client.call("/Greeter/greet", f"{tag}-{n}")
        assert response.status == 200, response.body
    added = await client.call(f"/Counter/{tag}/add", 2)
    assert added.status == 200, added.body
    flaky = await client.call("/Steps/flaky", tag)  # fails twice, then succeeds: retries
    assert flaky.status == 200, flaky.body
    missing = await client.call("/Greeter/nope", "x")
    assert missing.status == 404
    # A workflow waiting on its promise stays in the store (invocations by state) and suspends.
    await client.send(f"/Approval/{tag}/run", "leave")
    # A delayed send waits on a timer (timers pending, invocations scheduled).
    delayed = await client.call("/Greeter/greet/send?delay=1h", f"{tag}-later")
    assert delayed.status == 202, delayed.body


async def test_metrics_move_under_a_workload(client: Client) -> None:
    before = await _scrape(client)
    tag = uuid.uuid4().hex[:8]
    await _workload(client, tag)

    async def suspended() -> Samples | None:
        # The waiting workflow's attempt ends suspended once the SDK sees it must wait.
        scraped = await _scrape(client)
        ended = "cairn_invoker_attempts_ended_total"
        gone = _total(scraped, ended, outcome="suspended") > _total(
            before, ended, outcome="suspended"
        )
        return scraped if gone else None

    after = await client.wait_for(suspended)

    def moved(name: str, **labels: str) -> float:
        return _total(after, name, **labels) - _total(before, name, **labels)

    assert (
        moved("cairn_ingress_requests_total", service="Greeter", handler="greet", status="200") == 3
    )
    assert moved("cairn_ingress_requests_total", service="", handler="", status="404") == 1
    assert moved("cairn_ingress_request_duration_seconds_count", service="Counter") == 1
    assert moved("cairn_ingress_request_duration_seconds_sum", service="Greeter") > 0
    assert moved("cairn_invoker_attempts_started_total") >= 6
    assert moved("cairn_invoker_attempts_ended_total", outcome="end") >= 5
    assert moved("cairn_invoker_attempts_ended_total", outcome="retry") >= 2
    assert moved("cairn_invoker_stream_duration_seconds_count") >= 5
    assert moved("cairn_journal_entries_appended_total") >= 5
    assert moved("cairn_records_applied_total") > 0
    assert moved("cairn_partition_apply_batch_records_count") > 0
    assert moved("cairn_partition_apply_seconds_count") > 0
    assert moved("cairn_partition_applied_lsn") > 0
    assert moved("cairn_log_append_records_sum") > 0
    assert moved("cairn_log_append_seconds_count") > 0
    assert _total(after, "cairn_partition_leader") == 4  # one node leads all four partitions
    assert _total(after, "cairn_invocations", state="completed") >= 5
    assert _total(after, "cairn_invocations", state="completed") > _total(
        before, "cairn_invocations", state="completed"
    )
    # Every applied partition has a lag series (caught up, so small).
    assert {ls for (n, ls) in after if n == "cairn_partition_lag_records"} == {
        frozenset({("partition", str(p))}) for p in range(4)
    }
    assert moved("cairn_timers_pending") >= 1  # the delayed send
    assert moved("cairn_invocations", state="scheduled") >= 1
    assert moved("cairn_invoker_attempts_ended_total", outcome="suspended") >= 1
    assert ("cairn_timers_pending", frozenset({("partition", "0")})) in after
    assert ("cairn_outbox_backlog", frozenset({("partition", "0")})) in after


async def test_the_dashboard_uses_only_exported_metrics(client: Client) -> None:
    await _workload(client, uuid.uuid4().hex[:8])
    exported = await _exported(client)
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    used = {name for expr in expressions for name in re.findall(r"\bcairn_[a-z_]+", expr)}
    assert len(used) >= 15, used
    assert sorted(used - exported) == []
