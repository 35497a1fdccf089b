"""COT release calendar: weekly rule, holidays, closures, shutdown override tables, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydra_daemon.cot.calendar import (
    latest_as_of_released,
    next_release_after,
    release_overrides,
    release_time,
    weekly_as_of_dates,
)
from hydra_daemon.sim import cftc_calendar as sim_calendar

NY = ZoneInfo("America/New_York")


def utc(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=UTC)


def test_agrees_with_the_simulators_independent_calendar_on_every_week_2006_to_2030() -> None:
    weeks = weekly_as_of_dates(date(2006, 1, 1), date(2030, 12, 31))
    assert weeks == sim_calendar.report_dates(date(2006, 1, 1), date(2030, 12, 31))
    assert [release_time(d) for d in weeks] == [sim_calendar.release_at(d) for d in weeks]


def test_winter_week_releases_friday_2030_utc() -> None:
    assert release_time(date(2026, 2, 17)) == utc(2026, 2, 20, 20, 30)


def test_summer_week_releases_friday_1930_utc() -> None:
    assert release_time(date(2024, 7, 16)) == utc(2024, 7, 19, 19, 30)


def test_result_is_utc_aware() -> None:
    released = release_time(date(2021, 3, 16))
    assert released.tzinfo is UTC
    assert released.astimezone(NY).time() == time(15, 30)


@pytest.mark.parametrize(
    ("as_of", "released"),
    [
        (date(2024, 6, 18), utc(2024, 6, 24, 19, 30)),  # Juneteenth Wed Jun 19
        (date(2024, 7, 2), utc(2024, 7, 8, 19, 30)),  # Independence Day Thu Jul 4
        (date(2024, 11, 26), utc(2024, 12, 2, 20, 30)),  # Thanksgiving Thu Nov 28 (EST again)
        (date(2024, 12, 24), utc(2024, 12, 30, 20, 30)),  # Christmas Wed Dec 25
    ],
)
def test_2024_holiday_weeks_release_next_monday(as_of: date, released: datetime) -> None:
    assert release_time(as_of) == released


def test_thanksgiving_week_2025_is_shutdown_override_but_2026_follows_rule() -> None:
    assert release_time(date(2025, 11, 25)) == utc(2025, 12, 19, 20, 30)
    assert release_time(date(2026, 11, 24)) == utc(2026, 11, 30, 20, 30)  # Thanksgiving Thu Nov 26 -> Mon


@pytest.mark.parametrize(
    ("as_of", "released"),
    [
        (date(2024, 1, 16), utc(2024, 1, 19, 20, 30)),  # MLK Mon Jan 15
        (date(2024, 9, 3), utc(2024, 9, 6, 19, 30)),  # Labor Day Mon Sep 2
        (date(2026, 5, 26), utc(2026, 5, 29, 19, 30)),  # Memorial Day Mon May 25
    ],
)
def test_monday_holiday_does_not_delay(as_of: date, released: datetime) -> None:
    assert release_time(as_of) == released


def test_tuesday_holiday_moves_as_of_to_monday_without_delay() -> None:
    # Veterans Day 2020 fell on Wed; 2031-11-11 is a Tuesday: as_of is Monday Nov 10, released that Friday.
    assert weekly_as_of_dates(date(2031, 11, 9), date(2031, 11, 15)) == [date(2031, 11, 10)]
    assert release_time(date(2031, 11, 10)) == utc(2031, 11, 14, 20, 30)


def test_friday_holiday_pushes_to_monday() -> None:
    assert release_time(date(2026, 12, 22)) == utc(2026, 12, 28, 20, 30)  # Christmas Fri Dec 25


def test_configured_extra_closure_delays() -> None:
    assert release_time(date(2026, 12, 29)) == utc(2027, 1, 4, 20, 30)  # New Year Fri Jan 1
    assert release_time(date(2027, 3, 9)) == utc(2027, 3, 12, 20, 30)
    assert release_time(date(2027, 3, 9), extra_closures={date(2027, 3, 11)}) == utc(2027, 3, 15, 19, 30)


def test_days_of_mourning_delay_like_holidays_without_configuration() -> None:
    assert release_time(date(2018, 12, 4)) == utc(2018, 12, 10, 20, 30)  # closed Wednesday 2018-12-05
    assert release_time(date(2025, 1, 7)) == utc(2025, 1, 13, 20, 30)  # closed Thursday 2025-01-09
    assert release_time(date(2025, 1, 14)) == utc(2025, 1, 17, 20, 30)  # the week after: normal


def test_extra_closure_on_following_monday_pushes_further() -> None:
    closures = [date(2026, 12, 28)]
    assert release_time(date(2026, 12, 22), extra_closures=closures) == utc(2026, 12, 29, 20, 30)


def test_extra_closure_on_tuesday_does_not_delay() -> None:
    assert release_time(date(2027, 3, 9), extra_closures=[date(2027, 3, 9)]) == utc(2027, 3, 12, 20, 30)


def test_monday_as_of_2018_12_24_comes_from_shutdown_table() -> None:
    assert weekly_as_of_dates(date(2018, 12, 23), date(2018, 12, 29)) == [date(2018, 12, 24)]
    assert release_time(date(2018, 12, 24)) == utc(2019, 2, 1, 20, 30)


def test_monday_as_of_2025_11_10_comes_from_shutdown_table() -> None:
    assert weekly_as_of_dates(date(2025, 11, 9), date(2025, 11, 15)) == [date(2025, 11, 10)]
    assert release_time(date(2025, 11, 10)) == utc(2025, 12, 12, 20, 30)


SHUTDOWN_2025 = [
    ("2025-09-30", "2025-11-19"),
    ("2025-10-07", "2025-11-21"),
    ("2025-10-14", "2025-11-25"),
    ("2025-10-21", "2025-12-02"),
    ("2025-10-28", "2025-12-05"),
    ("2025-11-04", "2025-12-09"),
    ("2025-11-10", "2025-12-12"),
    ("2025-11-18", "2025-12-16"),
    ("2025-11-25", "2025-12-19"),
    ("2025-12-02", "2025-12-23"),
    ("2025-12-09", "2025-12-30"),
    ("2025-12-16", "2026-01-06"),
    ("2025-12-23", "2026-01-09"),
    ("2025-12-30", "2026-01-13"),
    ("2026-01-06", "2026-01-16"),
    ("2026-01-13", "2026-01-20"),
]
SHUTDOWN_2018_STATED = [
    ("2018-12-24", "2019-02-01"),
    ("2018-12-31", "2019-02-05"),
    ("2019-01-08", "2019-02-08"),
    ("2019-01-15", "2019-02-12"),
    ("2019-03-05", "2019-03-08"),
]
SHUTDOWN_2018_INFERRED = [
    ("2019-01-22", "2019-02-15"),
    ("2019-01-29", "2019-02-19"),
    ("2019-02-05", "2019-02-22"),
    ("2019-02-12", "2019-02-26"),
    ("2019-02-19", "2019-03-01"),
    ("2019-02-26", "2019-03-05"),
]


@pytest.mark.parametrize(("as_of", "released"), SHUTDOWN_2025 + SHUTDOWN_2018_STATED + SHUTDOWN_2018_INFERRED)
def test_shutdown_rows_release_1530_new_york(as_of: str, released: str) -> None:
    expected = datetime.combine(date.fromisoformat(released), time(15, 30), tzinfo=NY).astimezone(UTC)
    assert release_time(date.fromisoformat(as_of)) == expected


def test_override_table_holds_exactly_the_listed_rows() -> None:
    expected = {
        date.fromisoformat(a): date.fromisoformat(r)
        for a, r in SHUTDOWN_2025 + SHUTDOWN_2018_STATED + SHUTDOWN_2018_INFERRED
    }
    assert dict(release_overrides()) == expected


def test_every_override_as_of_is_a_scheduled_report_date() -> None:
    for as_of in release_overrides():
        assert weekly_as_of_dates(as_of, as_of) == [as_of]


def test_overrides_ignore_extra_closures() -> None:
    assert release_time(date(2025, 12, 23), extra_closures={date(2026, 1, 9)}) == utc(2026, 1, 9, 20, 30)


def test_normal_again_after_2025_shutdown() -> None:
    assert release_time(date(2026, 1, 20)) == utc(2026, 1, 23, 20, 30)
    assert release_time(date(2025, 9, 23)) == utc(2025, 9, 26, 19, 30)


def test_dst_switch_weeks() -> None:
    assert release_time(date(2026, 3, 3)) == utc(2026, 3, 6, 20, 30)  # EST
    assert release_time(date(2026, 3, 10)) == utc(2026, 3, 13, 19, 30)  # EDT from Mar 8
    assert release_time(date(2026, 10, 27)) == utc(2026, 10, 30, 19, 30)  # EDT
    assert release_time(date(2026, 11, 3)) == utc(2026, 11, 6, 20, 30)  # EST from Nov 1


@pytest.mark.parametrize("bad", ["2026-02-17", datetime(2026, 2, 17, tzinfo=UTC), 20260217, None])
def test_non_date_as_of_rejected(bad: object) -> None:
    with pytest.raises(TypeError, match=r"as_of must be a datetime\.date"):
        release_time(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("as_of", "weekday"), [(date(2026, 2, 20), "Friday"), (date(2026, 2, 21), "Saturday")])
def test_friday_or_weekend_as_of_rejected(as_of: date, weekday: str) -> None:
    with pytest.raises(ValueError, match=weekday):
        release_time(as_of)


def test_bad_extra_closures_rejected() -> None:
    with pytest.raises(TypeError, match="extra_closures"):
        release_time(date(2026, 2, 17), extra_closures=date(2026, 2, 19))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="extra_closures item"):
        release_time(date(2026, 2, 17), extra_closures=["2026-02-19"])  # type: ignore[list-item]


def test_next_release_after_normal_week() -> None:
    assert next_release_after(utc(2026, 2, 18, 12)) == (date(2026, 2, 17), utc(2026, 2, 20, 20, 30))
    assert next_release_after(utc(2026, 2, 20, 20, 30)) == (date(2026, 2, 24), utc(2026, 2, 27, 20, 30))


def test_next_release_after_during_shutdown_is_first_catch_up() -> None:
    assert next_release_after(utc(2025, 10, 10, 0)) == (date(2025, 9, 30), utc(2025, 11, 19, 20, 30))
    assert next_release_after(utc(2025, 11, 19, 21)) == (date(2025, 10, 7), utc(2025, 11, 21, 20, 30))


def test_next_release_after_uses_extra_closures() -> None:
    as_of, released = next_release_after(utc(2027, 3, 10, 0), extra_closures=[date(2027, 3, 12)])
    assert (as_of, released) == (date(2027, 3, 9), utc(2027, 3, 15, 19, 30))


def test_next_release_after_rejects_naive_datetime() -> None:
    with pytest.raises(TypeError, match="timezone-aware"):
        next_release_after(datetime(2026, 2, 18))


def test_latest_as_of_released() -> None:
    assert latest_as_of_released(utc(2026, 2, 20, 20, 29)) == date(2026, 2, 10)
    assert latest_as_of_released(utc(2026, 2, 20, 20, 30)) == date(2026, 2, 17)
    assert latest_as_of_released(utc(2025, 11, 18, 12)) == date(2025, 9, 23)


report_dates = st.dates(min_value=date(2006, 1, 1), max_value=date(2040, 12, 31)).map(
    lambda d: weekly_as_of_dates(d, d + timedelta(days=7))[0]
)
position_days = st.dates(min_value=date(2006, 1, 1), max_value=date(2040, 12, 31)).filter(lambda d: d.weekday() < 4)
instants = st.datetimes(min_value=datetime(2006, 2, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC))


@given(position_days)
def test_property_release_after_end_of_day_on_weekday_utc(as_of: date) -> None:
    released = release_time(as_of)
    assert released.tzinfo is UTC
    assert released > datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=NY)
    assert released.astimezone(NY).weekday() < 5
    assert released.astimezone(NY).time() == time(15, 30)


@given(report_dates)
def test_property_monotonic_over_schedule(as_of: date) -> None:
    following = weekly_as_of_dates(as_of + timedelta(days=1), as_of + timedelta(days=8))
    assert len(following) == 1
    assert release_time(as_of) <= release_time(following[0])


@given(instants)
def test_property_next_and_latest_bracket_t(t: datetime) -> None:
    as_of, released = next_release_after(t)
    assert released > t
    assert release_time(latest_as_of_released(t)) <= t
    assert latest_as_of_released(t) < as_of
