"""``--log-format json`` (README "Logs"): one JSON object per line, and a line about an
invocation attempt carries the invocation's id and target; the text format names them too."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, start_cluster, stop_cluster
from tests.e2e.harness import Client

APP = "tests.e2e.apps.introspection:app"


@pytest.fixture(params=["json", "text"])
def log_format(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def logged(log_format: str, tmp_path: Path) -> Iterator[Cluster]:
    started = start_cluster(APP, "local", tmp_path, None, extra=["--log-format", log_format])
    yield started
    stop_cluster(started)


async def test_attempt_lines_carry_the_invocation(logged: Cluster, log_format: str) -> None:
    client = Client(logged.node)
    try:
        response = await client.call("/Steps/flaky", uuid.uuid4().hex)  # fails twice, retried
        assert response.status == 200, response.body
    finally:
        await client.close()
    invocation_id = response.headers["x-restate-id"]
    output = logged.node.process.output()
    if log_format == "json":
        records: list[dict[str, Any]] = [
            json.loads(line) for line in output.splitlines() if line.startswith("{")
        ]
        assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
        failed = [r for r in records if " failed (500)" in r["message"]]
        assert len(failed) == 2, records  # the SDK's report of each failed attempt
        for record in failed:
            assert record["invocation_id"] == invocation_id
            assert record["target"] == "Steps/flaky"
            assert record["logger"] == "runtime.invoker.attempt"
            assert record["level"] == "WARNING" and "transient failure" in record["message"]
        # Lines about no invocation carry no invocation fields.
        ready = [r for r in records if "ready" in r["message"]]
        assert ready and "invocation_id" not in ready[0]
    else:
        failed_lines = [line for line in output.splitlines() if " failed (500)" in line]
        assert len(failed_lines) == 2, output[-3000:]
        assert all(line.endswith(f"[{invocation_id} Steps/flaky]") for line in failed_lines)
