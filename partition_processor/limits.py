"""Saturating time arithmetic and the bounds every stored number must respect (DESIGN §11).

A wake time is a big-endian u64 in the timer key (``keys.timer_key``) and every duration comes
from outside (a ``?delay=``, a handler's ``Sleep``, a retry policy or retention in a manifest), so
sums and products of durations saturate instead of overflowing into a record that cannot be
applied.
"""

from __future__ import annotations

import math

# 9999-12-31T23:59:59.999Z: later than any real wake time, far inside the u64 of a timer key.
MAX_TIMESTAMP_MS = 253_402_300_799_999
# A journal index is a big-endian u32 in the journal key.
MAX_JOURNAL_INDEX = 2**32 - 1


def clamp_ms(value: int) -> int:
    """``value`` inside ``[0, MAX_TIMESTAMP_MS]``."""
    return min(max(value, 0), MAX_TIMESTAMP_MS)


def add_ms(start_ms: int, duration_ms: int) -> int:
    """``start_ms + duration_ms``, saturated to a valid wake time."""
    return clamp_ms(start_ms + max(duration_ms, 0))


def backoff_ms(initial_ms: int, factor: float, exponent: int, cap_ms: int) -> int:
    """``initial_ms * factor**exponent`` capped at ``cap_ms``, without ``OverflowError``.

    A steep factor reaches float infinity after a few hundred attempts (``float ** int`` raises
    then); a non-finite or NaN factor from a manifest must not poison the partition either.
    """
    cap = clamp_ms(cap_ms)
    initial = clamp_ms(initial_ms)
    if not math.isfinite(factor) or factor <= 1.0 or exponent <= 0:
        return min(initial, cap)
    # log space first: factor**exponent overflows long before the cap is the answer.
    if initial == 0:
        return 0
    if exponent * math.log(factor) + math.log(initial) >= math.log(cap + 1):
        return cap
    return min(int(initial * factor**exponent), cap)
