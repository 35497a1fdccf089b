"""When a UTC day is complete for the lake: at its end, or at the close of the Globex session open across it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydra_daemon.lake.schedule import complete_at, last_complete_day


def test_a_weeknight_day_completes_when_the_session_open_at_midnight_closes() -> None:
    # Tue 2026-03-03 ends at Wed 00:00 UTC inside Wednesday's session (opened Tue 17:00 CST); it closes 16:00 CST.
    assert complete_at(date(2026, 3, 3)) == datetime(2026, 3, 4, 22, 0, tzinfo=UTC)
    # Summer time: 16:00 CDT is 21:00 UTC.
    assert complete_at(date(2026, 7, 7)) == datetime(2026, 7, 8, 21, 0, tzinfo=UTC)


def test_friday_and_saturday_complete_at_midnight_and_sunday_with_mondays_close() -> None:
    assert complete_at(date(2026, 3, 6)) == datetime(2026, 3, 7, tzinfo=UTC)  # Friday: Globex closed at midnight
    assert complete_at(date(2026, 3, 7)) == datetime(2026, 3, 8, tzinfo=UTC)
    assert complete_at(date(2026, 3, 8)) == datetime(2026, 3, 9, 21, 0, tzinfo=UTC)  # Sunday: CDT from Mar 8


def test_last_complete_day_waits_for_the_delay() -> None:
    close = complete_at(date(2026, 3, 3))
    delay = timedelta(minutes=30)
    assert last_complete_day(close + delay, delay) == date(2026, 3, 3)
    assert last_complete_day(close + delay - timedelta(seconds=1), delay) == date(2026, 3, 2)
    with pytest.raises(ValueError, match="timezone-aware"):
        last_complete_day(datetime(2026, 3, 4), delay)


@given(
    now=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
    delay_s=st.integers(min_value=1, max_value=7 * 86_400),
)
def test_last_complete_day_is_the_newest_day_complete_by_now_minus_delay(now: datetime, delay_s: int) -> None:
    delay = timedelta(seconds=delay_s)
    day = last_complete_day(now, delay)
    assert complete_at(day) <= now - delay
    assert complete_at(day + timedelta(days=1)) > now - delay
