"""The SQL a bulk action sends: ``--where`` combined with ``--status``/``--service`` (quoted as
literals), completed invocations left out of cancel and kill and the only ones purged, run on
the real engine over a ``sys_invocation`` table."""

from __future__ import annotations

import argparse

import pytest

from runtime.admin.sql import Limits, QueryError, check_read_only, run_query
from runtime.admin.sql_tables import COLUMNS as TABLE_COLUMNS
from runtime.cli_bulk import _condition

COLUMNS = len(TABLE_COLUMNS["sys_invocation"])


def _row(n: int, service: str, status: str) -> tuple[object, ...]:
    row: list[object] = [0, f"inv_{n}", f"{service}/run", service, "run", None, status]
    row += [n, n, 1, 0, 0, None, None, None]
    row += [None] * (COLUMNS - len(row))  # the columns these tests do not filter on
    assert len(row) == COLUMNS
    return tuple(row)


ROWS = [
    _row(1, "O'Brien", "suspended"),
    _row(2, "O'Brien", "completed"),
    _row(3, "Other", "suspended"),
    _row(4, "Other", "invoked"),
]


def _ids(action: str, where: str | None = None, service: str | None = None) -> list[str]:
    args = argparse.Namespace(action=action, where=where, status=None, service=service)
    query = f"SELECT id FROM sys_invocation WHERE {_condition(args)} ORDER BY id"
    check_read_only(query)
    _, rows, _ = run_query(query, {"sys_invocation": ROWS}, Limits(100))
    return [r["id"] for r in rows]


def test_service_is_a_quoted_literal_and_completed_ones_are_left_out() -> None:
    assert _ids("cancel", service="O'Brien") == ["inv_1"]
    assert _ids("purge", service="O'Brien") == ["inv_2"]


def test_where_is_one_condition_even_with_or_and_a_trailing_comment() -> None:
    # Parenthesized: the OR does not escape the "not completed" condition.
    assert _ids("kill", where="service = 'Other' OR service = 'O''Brien' -- all") == [
        "inv_1",
        "inv_3",
        "inv_4",
    ]
    assert _ids("kill", where="service = 'Other'", service="Other") == ["inv_3", "inv_4"]


@pytest.mark.parametrize(
    "where",
    ["true); DROP TABLE sys_invocation; (true", "true); DROP TABLE sys_invocation; SELECT (1"],
)
def test_a_where_that_closes_the_parenthesis_cannot_add_a_statement(where: str) -> None:
    with pytest.raises(QueryError) as refused:
        _ids("cancel", where=where)
    assert refused.value.status == 400
