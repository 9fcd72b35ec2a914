"""The SQL engine alone: which tables a query loads, the read-only check, the result bound and
how values are shown."""

from __future__ import annotations

import pytest

from runtime.admin.sql import QueryError, check_read_only, run_query, tables_named


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
        "SELECT partition, value, value_raw FROM state ORDER BY partition", {"state": rows}, 3
    )
    assert columns == ["partition", "value", "value_raw"]
    assert result == [{"partition": p, "value": 5, "value_raw": "NQ=="} for p in range(3)]
    assert truncated
    _, everything, truncated = run_query("SELECT * FROM state", {"state": rows}, 5)
    assert len(everything) == 5 and not truncated
