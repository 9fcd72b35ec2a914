import pytest

from runtime.ingress.durations import InvalidDuration, parse_duration_ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("10s", 10_000),
        ("500ms", 500),
        ("1m 30s", 90_000),
        ("2h", 7_200_000),
        ("1day", 86_400_000),
        ("1.5s", 1_500),
        ("PT10S", 10_000),
        ("PT1M30S", 90_000),
        ("P1D", 86_400_000),
        ("P1DT1H", 90_000_000),
        ("pt0.5s", 500),
    ],
)
def test_parses_humantime_and_iso8601(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "10", "ten seconds", "10 parsecs", "P", "PT", "PXD", "-5s"])
def test_rejects_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(InvalidDuration):
        parse_duration_ms(text)
