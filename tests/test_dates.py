"""Dates on the form: each value, and the UTC instant a person would read from it (or none)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.parse.forms.dates import parse_when

BERLIN = ZoneInfo("Europe/Berlin")  # UTC+1 in November
T1305 = datetime(2026, 11, 25, 13, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T14:05+01:00", T1305),  # ISO 8601
        ("2026-11-25T13:05:00Z", T1305),
        ("2026-11-25T14:05:00.250+0100", T1305),
        ("Wed, 25 Nov 2026 14:05:00 +0100", T1305),  # RFC 2822
        ("25 Nov 2026 14:05 CET", T1305),
        ("25th November 2026 at 14:05 CET", T1305),
        ("Nov 25, 2026 8:05 AM EST", T1305),
        ("2026-11-25 1:05pm UTC", T1305),
        ("11/25/2026 14:05 (UTC+1)", T1305),  # US order: 25 cannot be a month
        ("25/11/2026 14:05 UTC+1", T1305),  # day first: 25 cannot be a month
        ("25.11.2026 14:05 MEZ", T1305),  # dotted is always day.month.year
        ("2026-11-25 08:05 GMT-05:00", T1305),
        ("2026-11-25 14:05 Europe/Berlin", T1305),
        ("13:05 UTC on 25 Nov 2026", T1305),
        ("approximately 2026-11-25 13:05 UTC (during the nightly scan)", T1305),
        ("2026-11-25 22:05 JST", T1305),
        ("2026-11-25 05:05 PST", T1305),
    ],
)
def test_clear_dates_with_zone(text: str, expected: datetime) -> None:
    result = parse_when(text, BERLIN)
    assert (result.at, result.assumed_zone, result.unreadable, result.date_only) == (
        expected, False, False, False)
    assert result.text == text
    assert result.note(BERLIN) is None


def test_time_without_zone_is_read_in_the_default_zone() -> None:
    result = parse_when("2026-11-25 14:05", BERLIN)
    assert result.at == T1305 and result.assumed_zone and not result.unreadable
    assert result.note(BERLIN) == "no time zone given; read as Europe/Berlin"


def test_date_only_is_the_start_of_that_day_and_says_so() -> None:
    result = parse_when("2026-11-25", BERLIN)
    assert result.at == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)  # midnight in Berlin
    assert result.date_only and result.assumed_zone
    assert result.note(BERLIN) == ("no time of day given; read as the start of that day; "
                                   "no time zone given; read as Europe/Berlin")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("05/06/2026", "day and month could be read either way; please write 2026-06-05"),
        ("25/11/26 14:05", "two-digit year"),
        ("2026-11-25 14:05 CST", "time zone CST could mean several zones"),
        ("2026-11-25 14:05 IST", "time zone IST could mean several zones"),
        ("2026-11-31 10:00 UTC", "day is out of range for month"),
        ("2026-11-25 25:00 UTC", "hour must be in 0..23"),
        ("yesterday evening", "no date found"),
        ("unknown", "no date found"),
        ("", "empty"),
        ("2026-11-25 14:05 UTC and then again on 2026-11-26", "unexpected text"),
        ("14:05", "no date found"),
        ("2026", "no date found"),
    ],
)
def test_unclear_values_are_unreadable_never_guessed(text: str, reason: str) -> None:
    result = parse_when(text, BERLIN)
    assert result.unreadable and result.at is None
    assert (result.reason or "").startswith(reason)
    assert (result.note(BERLIN) or "").startswith("could not read this date")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_and_result_is_utc_or_unreadable(text: str) -> None:
    result = parse_when(text, BERLIN)
    assert (result.at is None) == result.unreadable
    if result.at is not None:
        assert result.at.utcoffset() is not None and result.at.utcoffset().total_seconds() == 0
