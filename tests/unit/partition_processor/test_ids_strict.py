"""Strict id parsing (DESIGN §11): exact prefix, length and alphabet; no signs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partition_processor.ids import (
    InvalidAwakeableId,
    InvalidInvocationId,
    awakeable_id,
    make_invocation_id,
    parse_awakeable_id,
    parse_partition_key,
)
from partition_processor.limits import MAX_TIMESTAMP_MS, add_ms, backoff_ms, clamp_ms

VALID = make_invocation_id(0x0123456789ABCDEF, bytes(range(16)))


@pytest.mark.parametrize(
    "bad",
    [
        "inv_-" + "0" * 47,  # a sign: int(x, 16) takes it, and the partition goes negative
        "inv_+" + "0" * 47,
        "inv_0_" + "0" * 46,  # underscores
        "inv_ " + "0" * 47,  # whitespace
        "inv_" + "0" * 47 + "\n",
        VALID.upper(),
        "INV_" + VALID[4:],
        "inv_" + "A" * 48,
        VALID[:-1],
        VALID + "0",
        "inv_" + "٣" * 48,  # digits of another script
        "",
    ],
)
def test_malformed_invocation_ids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInvocationId):
        parse_partition_key(bad)


@given(st.integers(0, 2**64 - 1), st.binary(min_size=16, max_size=16))
def test_every_made_id_parses_back(partition_key: int, uuid: bytes) -> None:
    assert parse_partition_key(make_invocation_id(partition_key, uuid)) == partition_key


@given(st.text(max_size=60))
def test_random_text_is_never_a_negative_partition_key(text: str) -> None:
    try:
        assert parse_partition_key(text) >= 0
    except InvalidInvocationId:
        pass


def test_awakeable_ids_round_trip_and_reject_lookalikes() -> None:
    good = awakeable_id(VALID, 7)
    assert parse_awakeable_id(good) == (VALID, 7)
    bad_owner = awakeable_id("inv_-" + "0" * 47, 7)
    for bad in (bad_owner, good[:-1], good + "A", good + "=", " " + good, "sign_1", "x"):
        with pytest.raises(InvalidAwakeableId):
            parse_awakeable_id(bad)


@given(st.text(max_size=100))
def test_random_awakeable_ids_are_refused_or_route_to_a_valid_id(text: str) -> None:
    try:
        owner, index = parse_awakeable_id("sign_1" + text)
    except InvalidAwakeableId:
        return
    assert parse_partition_key(owner) >= 0 and 0 <= index < 2**32


def test_time_arithmetic_saturates() -> None:
    assert add_ms(MAX_TIMESTAMP_MS - 1, 10**30) == MAX_TIMESTAMP_MS
    assert add_ms(5, -10) == 5
    assert clamp_ms(-1) == 0 and clamp_ms(2**70) == MAX_TIMESTAMP_MS
    assert backoff_ms(500, 2.0, 100_000, 60_000) == 60_000
    assert backoff_ms(500, 1e308, 10, 60_000) == 60_000
    assert backoff_ms(500, float("nan"), 10, 60_000) == 500
    assert backoff_ms(500, float("inf"), 10, 60_000) == 500
    assert backoff_ms(500, 2.0, 0, 60_000) == 500
    assert backoff_ms(500, 2.0, 3, 60_000) == 4000
    assert backoff_ms(500, 2.0, 3, 10**40) == 4000
