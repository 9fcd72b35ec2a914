"""The SQL engine alone: which tables a query loads, the read-only check, the result bound,
how values are shown, and interrupting a long query."""

from __future__ import annotations

import threading

import pytest

from runtime.admin.sql import (
    Interrupt,
    Limits,
    QueryError,
    check_read_only,
    run_query,
    tables_named,
)


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
