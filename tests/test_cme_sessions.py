"""CME Globex calendar: weekly hours, the daily break, holidays and half days, open time between two instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_daemon.cme_sessions import CHICAGO, is_open, next_open, open_seconds, session_at, session_for


def chicago(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHICAGO).astimezone(UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (chicago(2026, 3, 6, 15, 59), True),  # Friday before the weekend close
        (chicago(2026, 3, 6, 16, 0), False),  # Friday close
        (chicago(2026, 3, 7, 12, 0), False),  # Saturday
        (chicago(2026, 3, 8, 16, 59), False),  # Sunday before the open
        (chicago(2026, 3, 8, 17, 0), True),  # Sunday open (Monday's session)
        (chicago(2026, 3, 10, 16, 30), False),  # the daily maintenance break
        (chicago(2026, 3, 10, 17, 0), True),  # Wednesday's session opens Tuesday evening
        (chicago(2026, 4, 2, 18, 0), False),  # Good Friday's session never opens
        (chicago(2026, 12, 25, 10, 0), False),  # Christmas
        (chicago(2026, 11, 27, 11, 59), True),  # day after Thanksgiving: open until noon
        (chicago(2026, 11, 27, 12, 0), False),
        (chicago(2026, 1, 19, 13, 0), False),  # MLK day pauses at noon
    ],
)
def test_open_or_closed(when: datetime, expected: bool) -> None:
    assert is_open(when) is expected


def test_session_of_a_monday_opens_sunday_evening_in_utc() -> None:
    session = session_for(date(2026, 3, 9))  # US daylight time started Sunday Mar 8
    assert session is not None
    assert session.opens == datetime(2026, 3, 8, 22, tzinfo=UTC)
    assert session.closes == datetime(2026, 3, 9, 21, tzinfo=UTC)
    assert session_for(date(2026, 3, 7)) is None
    assert session_at(datetime(2026, 3, 9, 3, tzinfo=UTC)) == session


def test_weekend_has_no_open_time_and_a_week_has_five_sessions() -> None:
    friday_close, sunday_open = chicago(2026, 3, 6, 16), chicago(2026, 3, 8, 17)
    assert open_seconds(friday_close, sunday_open) == 0.0
    assert open_seconds(friday_close - timedelta(minutes=5), sunday_open + timedelta(minutes=10)) == 15 * 60
    week = open_seconds(chicago(2026, 3, 8, 17), chicago(2026, 3, 13, 16))
    assert week == 5 * 23 * 3600
    assert next_open(chicago(2026, 3, 7, 9)) == sunday_open
    assert next_open(chicago(2026, 3, 10, 16, 30)) == chicago(2026, 3, 10, 17)


def test_naive_times_are_refused() -> None:
    with pytest.raises(TypeError, match="timezone-aware"):
        is_open(datetime(2026, 3, 9, 12))


instants = st.datetimes(min_value=datetime(2016, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC))


@settings(max_examples=200, deadline=None)
@given(a=instants, b=instants, c=instants)
def test_open_time_is_additive_and_bounded(a: datetime, b: datetime, c: datetime) -> None:
    a, b, c = sorted((a, b, c))
    if c - a > timedelta(days=60):
        c = a + timedelta(days=60)
        b = min(b, c)
    assert open_seconds(a, b) + open_seconds(b, c) == pytest.approx(open_seconds(a, c))
    assert 0 <= open_seconds(a, c) <= (c - a).total_seconds()


@settings(max_examples=200, deadline=None)
@given(t=instants)
def test_is_open_agrees_with_open_time(t: datetime) -> None:
    assert is_open(t) == (open_seconds(t, t + timedelta(microseconds=1)) > 0)
    assert is_open(next_open(t))
