"""The web console's parts that need no node: the throughput ring and its sparkline, the SQL
literal quoting of the invocation filters, and the invocation filters' validation."""

from __future__ import annotations

import pytest

from runtime.console.state_edit import EditError, parse_edit, shown_entries
from runtime.console.throughput import Throughput, sparkline
from runtime.console.views import Filters, _literal, age, utc


def test_rates_are_per_second_between_samples_and_the_ring_is_bounded() -> None:
    value = [0.0]
    ring = Throughput(lambda: value[0], interval_s=1.0, size=3)
    for at_s, total in ((0.0, 0.0), (2.0, 10.0), (4.0, 10.0), (5.0, 13.0), (7.0, 17.0)):
        value[0] = total
        ring.sample(at_s)
    # The last 4 samples (size + 1) give 3 rates.
    assert ring.rates() == [0.0, 3.0, 2.0]


def test_a_counter_that_went_back_is_no_negative_rate() -> None:
    value = [5.0]
    ring = Throughput(lambda: value[0])
    ring.sample(0.0)
    value[0] = 1.0
    ring.sample(1.0)
    assert ring.rates() == [0.0]


def test_the_sparkline_puts_the_peak_at_the_top() -> None:
    assert sparkline([]) == "" and sparkline([3.0]) == ""
    points = [tuple(map(float, p.split(","))) for p in sparkline([0.0, 4.0, 2.0]).split()]
    assert [x for x, _ in points] == [0.0, 150.0, 300.0]
    ys = [y for _, y in points]
    assert ys[1] < ys[2] < ys[0] and min(ys) >= 0 and max(ys) <= 48


def test_filters_quote_their_values_and_refuse_unknown_statuses() -> None:
    assert _literal("it's") == "'it''s'"
    filters = Filters.of({"service": " Notes ", "status": "nope", "page": "x"})
    assert filters.service == "Notes" and filters.status == "" and filters.page == 0
    assert len(filters.problems) == 2
    assert Filters.of({"service": "A&B", "page": "2"}).query_string(3) == "service=A%26B&page=3"


def test_ages_use_their_largest_unit() -> None:
    assert age(100_000, 0) == ""
    assert [age(now, 1) for now in (5_001, 120_001, 7_200_001, 172_800_001)] == [
        "5s",
        "2m",
        "2h",
        "2d",
    ]


def test_timestamps_show_as_utc_to_the_millisecond() -> None:
    assert utc(0) == "" and utc(None) == ""
    assert utc(1_796_041_681_345) == "2026-11-30 12:28:01.345 UTC"


def test_the_state_form_becomes_the_whole_new_state() -> None:
    shown = shown_entries({"count": list(b"3"), "blob": [0xFF, 0x00], "note": list(b'"a<b"')})
    assert [e["name"] for e in shown] == ["blob", "count", "note"]
    assert shown[0]["json"] is None and shown[0]["base64"] == "/wA="
    assert shown[1]["json"] == "3" and shown[2]["json"] == '"a<b"'
    form = {
        "service": "Counter",
        "key": "k",
        "version": "v1",
        "entries": "3",
        "name_0": "blob",
        "raw_0": "/wA=",
        "name_1": "count",
        "value_1": " 42 ",
        "name_2": "note",
        "value_2": '"x"',
        "delete_2": "on",
        "new_name": "tags",
        "new_value": '["a", "b"]',
    }
    edit = parse_edit(form)
    assert (edit.service, edit.key, edit.version) == ("Counter", "k", "v1")
    assert edit.new_state == {"blob": b"\xff\x00", "count": b"42", "tags": b'["a","b"]'}
    assert parse_edit({**form, "version": ""}).version is None


def test_a_bad_form_says_why_and_sends_nothing() -> None:
    base = {"service": "Counter", "key": "k", "entries": "1", "name_0": "count", "value_0": "1"}
    for changes, reason in (
        ({"value_0": "{nope"}, "not JSON"),
        ({"new_name": "count", "new_value": "2"}, "already an entry"),
        ({"new_value": "2"}, "no name"),
        ({"entries": "x"}, "entry count"),
        ({"entries": "2"}, "no name"),
        ({"raw_0": "###"}, "damaged"),
        ({"service": ""}, "no service"),
    ):
        with pytest.raises(EditError, match=reason):
            parse_edit({**base, **changes})
