"""CME Globex calendar: weekly hours, the daily break, holidays and half days, open time between two instants; and
markets trading only some hours of it (livestock 08:30-13:05 Chicago)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_daemon.cme_sessions import (
    CHICAGO,
    GLOBEX,
    MarketSchedule,
    Session,
    is_open,
    next_open,
    open_seconds,
    session_at,
    session_for,
)


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


LIVESTOCK = MarketSchedule.parse("08:30-13:05")


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (chicago(2026, 3, 10, 8, 29), False),  # Tuesday, before the livestock open (Globex is open)
        (chicago(2026, 3, 10, 8, 30), True),
        (chicago(2026, 3, 10, 13, 4), True),
        (chicago(2026, 3, 10, 13, 5), False),  # the livestock close
        (chicago(2026, 3, 10, 15, 0), False),  # Globex still open
        (chicago(2026, 3, 10, 20, 0), False),  # the Globex evening of Wednesday's session
        (chicago(2026, 3, 9, 10, 0), True),  # Monday (DST began Sunday)
        (chicago(2026, 3, 7, 10, 0), False),  # Saturday
        (chicago(2026, 4, 3, 10, 0), False),  # Good Friday
        (chicago(2026, 11, 27, 11, 59), True),  # half day: cut at noon
        (chicago(2026, 11, 27, 12, 0), False),
    ],
)
def test_livestock_trade_0830_to_1305_chicago_on_globex_trading_dates(when: datetime, expected: bool) -> None:
    assert is_open(when, LIVESTOCK) is expected


def test_livestock_sessions_reopen_times_and_open_time() -> None:
    tuesday = Session(date(2026, 3, 10), chicago(2026, 3, 10, 8, 30), chicago(2026, 3, 10, 13, 5))
    assert session_at(chicago(2026, 3, 10, 9), LIVESTOCK) == tuesday
    assert session_at(chicago(2026, 3, 10, 14), LIVESTOCK) is None
    assert next_open(chicago(2026, 3, 10, 14), LIVESTOCK) == chicago(2026, 3, 11, 8, 30)
    assert next_open(chicago(2026, 3, 6, 14), LIVESTOCK) == chicago(2026, 3, 9, 8, 30), "Friday to Monday"
    assert next_open(chicago(2026, 3, 10, 9), LIVESTOCK) == chicago(2026, 3, 10, 9)
    assert open_seconds(chicago(2026, 3, 8, 17), chicago(2026, 3, 13, 16), LIVESTOCK) == 5 * (4 * 3600 + 35 * 60)
    assert LIVESTOCK.day_seconds == 4 * 3600 + 35 * 60 and GLOBEX.day_seconds is None


def test_a_half_day_cuts_hours_that_span_its_close_and_no_others() -> None:
    friday = (chicago(2026, 11, 27, 0), chicago(2026, 11, 27, 16))  # the day after Thanksgiving closes at 12:00
    assert open_seconds(*friday, LIVESTOCK) == 3.5 * 3600
    assert open_seconds(*friday, MarketSchedule.parse("08:30-11:00")) == 2.5 * 3600
    assert open_seconds(*friday, MarketSchedule.parse("12:30-13:05")) == 0
    assert open_seconds(chicago(2014, 11, 28, 0), chicago(2014, 11, 28, 16), LIVESTOCK) == 2 * 3600, "10:30 then"


def test_day_hours_markets_are_closed_on_a_federal_holiday_globex_only_pauses_on() -> None:
    """Martin Luther King Jr. Day 2026 (Monday 01-19): Globex pauses at noon, livestock do not trade (CME's holiday
    schedule); its eve-type half days (the day after Thanksgiving) still cut the hours at noon."""
    mlk = chicago(2026, 1, 19, 10)
    assert is_open(mlk) and not is_open(mlk, LIVESTOCK)
    assert next_open(chicago(2026, 1, 16, 14), LIVESTOCK) == chicago(2026, 1, 20, 8, 30), "Friday to Tuesday"
    assert open_seconds(chicago(2026, 1, 19, 0), chicago(2026, 1, 19, 16), LIVESTOCK) == 0
    for holiday in (date(2026, 2, 16), date(2026, 5, 25), date(2026, 6, 19), date(2026, 9, 7)):
        assert (
            open_seconds(
                chicago(holiday.year, holiday.month, holiday.day, 0),
                chicago(holiday.year, holiday.month, holiday.day, 16),
                LIVESTOCK,
            )
            == 0
        ), holiday
    assert is_open(chicago(2026, 11, 27, 11), LIVESTOCK)


def test_hours_text_round_trips_and_bad_hours_say_what_is_expected() -> None:
    assert LIVESTOCK.hours == (time(8, 30), time(13, 5))
    assert str(LIVESTOCK) == "08:30-13:05" and str(GLOBEX) == "Globex"
    for bad in ("8:30-13:05", "08:30-08:30", "13:05-08:30", "08:30-16:01", "24:00-25:00", "08:30 - 13:05", ""):
        with pytest.raises(ValueError, match='"HH:MM-HH:MM" in America/Chicago'):
            MarketSchedule.parse(bad)


_clocks = st.integers(min_value=0, max_value=16 * 60).map(lambda m: time(m // 60, m % 60))
_windows = st.tuples(_clocks, _clocks).filter(lambda w: w[0] < w[1])
_with_hours = _windows.map(MarketSchedule)
schedules = st.one_of(st.just(GLOBEX), st.just(LIVESTOCK), _with_hours)


@settings(max_examples=100, deadline=None)
@given(window=_windows)
def test_any_valid_window_parses_to_itself(window: tuple[time, time]) -> None:
    text = f"{window[0]:%H:%M}-{window[1]:%H:%M}"
    assert str(MarketSchedule.parse(text)) == text


@settings(max_examples=100, deadline=None)
@given(schedule=schedules, a=instants, b=instants, c=instants)
def test_open_time_of_any_hours_is_additive_and_within_globex(
    schedule: MarketSchedule, a: datetime, b: datetime, c: datetime
) -> None:
    a, b, c = sorted((a, b, c))
    if c - a > timedelta(days=30):
        c = a + timedelta(days=30)
        b = min(b, c)
    total = open_seconds(a, c, schedule)
    assert open_seconds(a, b, schedule) + open_seconds(b, c, schedule) == pytest.approx(total)
    assert 0 <= total <= open_seconds(a, c)


@settings(max_examples=100, deadline=None)
@given(schedule=schedules, t=instants)
def test_is_open_agrees_with_sessions_open_time_and_next_open(schedule: MarketSchedule, t: datetime) -> None:
    session = session_at(t, schedule)
    assert (
        is_open(t, schedule) == (session is not None) == (open_seconds(t, t + timedelta(microseconds=1), schedule) > 0)
    )
    assert session is None or (session.opens <= t < session.closes and is_open(t))
    reopens = next_open(t, schedule)
    assert is_open(reopens, schedule) and open_seconds(t, reopens, schedule) == 0
