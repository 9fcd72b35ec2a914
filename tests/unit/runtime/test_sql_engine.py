"""The SQL engine alone: which tables a query loads, the read-only check, the result bound,
how values are shown, and interrupting a long query."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from runtime.admin.sql import (
    Interrupt,
    Limits,
    QueryError,
    check_read_only,
    run_query,
    run_query_arrow,
    tables_named,
)
from runtime.admin.sql_formats import UnknownFormat, negotiate


def test_only_the_tables_a_query_names_are_loaded() -> None:
    query = "SELECT * FROM sys_invocation i JOIN SYS_JOURNAL j ON j.invocation_id = i.id"
    assert tables_named(query) == ["sys_invocation", "sys_journal"]
    assert tables_named("SELECT 1") == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("INSERT INTO state VALUES (1)", "read-only"),
        ("ATTACH 'x.db'", "read-only"),
        ("SET threads = 1", "read-only"),
        ("SELECT 1; DROP TABLE state", "exactly one"),
        ("COPY state TO '/tmp/cairn-state.csv'", "read-only"),
        ("INSTALL httpfs", "read-only"),
        ("LOAD httpfs", "read-only"),
        ("PRAGMA version", "read-only"),
        ("SELEC 1", "syntax error"),
    ],
)
def test_anything_but_one_select_is_refused(query: str, message: str) -> None:
    with pytest.raises(QueryError) as refused:
        check_read_only(query)
    assert refused.value.status == 400 and message in refused.value.message


def test_the_result_bound_truncates_and_says_so() -> None:
    rows = [(p, f"S{p}", "k", "n", "5", b"5") for p in range(5)]
    columns, result, truncated = run_query(
        "SELECT partition, value, value_raw FROM state ORDER BY partition",
        {"state": rows},
        Limits(result_rows=3),
    )
    assert columns == ["partition", "value", "value_raw"]
    assert result == [{"partition": p, "value": 5, "value_raw": "NQ=="} for p in range(3)]
    assert truncated
    _, everything, truncated = run_query("SELECT * FROM state", {"state": rows}, Limits(5))
    assert len(everything) == 5 and not truncated


def test_a_long_query_is_interrupted() -> None:
    """A query running in a thread stops when interrupted (the node does so past its timeout)."""
    interrupt = Interrupt()
    timer = threading.Timer(0.5, interrupt)
    timer.start()
    endless = "SELECT count(*) FROM range(1000000000000) a"
    try:
        with pytest.raises(QueryError) as stopped:
            run_query(endless, {}, Limits(10), interrupt)
    finally:
        timer.cancel()
    assert stopped.value.status == 400 and "nterrupt" in stopped.value.message


def test_arrow_keeps_the_engines_types_and_the_result_bound() -> None:
    rows = [(p, f"S{p}", None if p % 2 else "k", "n", "5", b"5") for p in range(5)]
    query = (
        "SELECT partition, service, key, epoch_ms(1700000000000 + partition) AS at "
        "FROM state ORDER BY partition"
    )
    table, truncated = run_query_arrow(query, {"state": rows}, Limits(result_rows=3))
    assert truncated and table.num_rows == 3
    assert pa.types.is_integer(table.schema.field("partition").type)
    assert pa.types.is_string(table.schema.field("service").type)
    assert pa.types.is_timestamp(table.schema.field("at").type)
    _, as_json, _ = run_query(query, {"state": rows}, Limits(result_rows=3))
    assert [{k: str(v) if k == "at" else v for k, v in r.items()} for r in table.to_pylist()] == (
        as_json
    )
    assert as_json[1]["key"] is None
    whole, truncated = run_query_arrow(query, {"state": rows}, Limits(result_rows=5))
    assert whole.num_rows == 5 and not truncated
    empty, truncated = run_query_arrow("SELECT * FROM state", {"state": []}, Limits(5))
    assert empty.num_rows == 0 and empty.schema.names[:2] == ["partition", "service"]
    assert not truncated


@pytest.mark.parametrize(
    ("accept", "requested", "chosen"),
    [
        ("", None, "json"),
        ("*/*", "csv", "csv"),
        ("application/vnd.apache.arrow.stream", None, "arrow"),
        ("text/csv; charset=utf-8", "arrow", "csv"),  # the header wins over the body
        ("application/json", "arrow", "json"),
        ("text/html, */*", "arrow", "arrow"),
    ],
)
def test_the_format_is_the_accept_headers_else_the_bodys(
    accept: str, requested: str | None, chosen: str
) -> None:
    assert negotiate(accept, requested) == chosen


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(UnknownFormat, match="json, csv, arrow"):
        negotiate("", "parquet")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/hostname')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM 'https://example.com/x.csv'",
    ],
)
def test_the_engine_reads_no_file_and_no_url(query: str) -> None:
    """These are single SELECTs (the read-only check lets them through): the engine's
    configuration must refuse them (enable_external_access off)."""
    check_read_only(query)
    with pytest.raises(QueryError) as refused:
        run_query(query, {}, Limits(5))
    assert refused.value.status == 400 and "disabled" in refused.value.message


def test_the_engines_lock_down_cannot_be_undone_by_a_query() -> None:
    settings = (
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
        "'autoload_known_extensions', 'autoinstall_known_extensions', 'lock_configuration') "
        "ORDER BY name"
    )
    _, rows, _ = run_query(settings, {}, Limits(10))
    assert {r["name"]: r["value"] for r in rows} == {
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "enable_external_access": "false",
        "lock_configuration": "true",
    }
    # query() runs a SQL string, but only a SELECT: no way around the statement check.
    with pytest.raises(QueryError, match="single SELECT"):
        run_query("SELECT * FROM query('ATTACH ''/tmp/x.db''')", {}, Limits(5))
