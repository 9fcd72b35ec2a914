from hypothesis import given
from hypothesis import strategies as st

from partition_processor import keys
from partition_processor.ids import (
    make_invocation_id,
    parse_partition_key,
    partition_of,
)


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.text(max_size=20)), min_size=2))
def test_timer_keys_sort_by_wake_time(timers: list[tuple[int, str]]) -> None:
    encoded = sorted(keys.timer_key(3, wake, tid) for wake, tid in timers)
    wakes = [keys.parse_timer_key(k)[0] for k in encoded]
    assert wakes == sorted(wakes)


@given(st.lists(st.integers(0, 2**64 - 1), min_size=2))
def test_inbox_keys_sort_by_sequence(seqs: list[int]) -> None:
    encoded = sorted(keys.inbox_key(1, "S", "k", s) for s in seqs)
    assert encoded == [keys.inbox_key(1, "S", "k", s) for s in sorted(seqs)]


@given(st.integers(0, 2**64 - 1), st.binary(min_size=16, max_size=16), st.integers(1, 64))
def test_invocation_id_round_trips_partition_key(pk: int, uuid: bytes, partitions: int) -> None:
    invocation_id = make_invocation_id(pk, uuid)
    assert parse_partition_key(invocation_id) == pk
    assert 0 <= partition_of(pk, partitions) < partitions


_names = st.text(max_size=30)


@given(st.integers(0, 2**16 - 1), _names, _names, _names, st.integers(0, 2**32 - 1))
def test_keys_read_back_their_fields(
    partition: int, service: str, key: str, name: str, index: int
) -> None:
    """SQL introspection reads rows' fields back from their keys."""
    assert keys.parse_status_key(keys.status_key(partition, name)) == name
    assert keys.parse_journal_key(keys.journal_key(partition, name, index)) == (name, index)
    assert keys.parse_state_key(keys.state_key(partition, service, key, name)) == (
        service,
        key,
        name,
    )
    assert keys.parse_promise_key(keys.promise_key(partition, service, key, name)) == (
        service,
        key,
        name,
    )
    assert keys.parse_inbox_key(keys.inbox_key(partition, service, key, index)) == (
        service,
        key,
        index,
    )
