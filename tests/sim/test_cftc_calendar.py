"""The simulator's own CFTC release calendar against the published facts (/work/shared/facts/cftc-cot.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from hydra_daemon.sim.cftc_calendar import CATCH_UP, federal_holidays, release_at, report_dates


def utc(y: int, m: int, d: int, hh: int, mm: int = 30) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=UTC)


@pytest.mark.parametrize(
    ("as_of", "released"),
    [
        (date(2026, 2, 17), utc(2026, 2, 20, 20)),  # Friday 15:30 New York is 20:30 UTC under EST...
        (date(2024, 7, 16), utc(2024, 7, 19, 19)),  # ...and 19:30 UTC under EDT
        (date(2024, 6, 18), utc(2024, 6, 24, 19)),  # 2024 holiday weeks release the next Monday (facts)
        (date(2024, 7, 2), utc(2024, 7, 8, 19)),
        (date(2024, 11, 26), utc(2024, 12, 2, 20)),
        (date(2024, 12, 24), utc(2024, 12, 30, 20)),
        (date(2024, 1, 16), utc(2024, 1, 19, 20)),  # a Monday holiday (MLK) does not delay it
        (date(2021, 6, 15), utc(2021, 6, 21, 19)),  # Juneteenth's first year: observed Friday 2021-06-18
        (date(2021, 12, 28), utc(2022, 1, 3, 20)),  # New Year's Day 2022 (Saturday) observed Friday 2021-12-31
        (date(2025, 11, 10), utc(2025, 12, 12, 20)),  # shutdown catch-up table
        (date(2018, 12, 24), utc(2019, 2, 1, 20)),
        (date(2026, 1, 20), utc(2026, 1, 23, 20)),  # normal again after the 2025 shutdown
        (date(2018, 12, 4), utc(2018, 12, 10, 20)),  # closed Wednesday 2018-12-05 (day of mourning)
        (date(2025, 1, 7), utc(2025, 1, 13, 20)),  # closed Thursday 2025-01-09 (day of mourning)
    ],
)
def test_release_times_follow_the_published_schedule(as_of: date, released: datetime) -> None:
    assert release_at(as_of) == released


def test_an_extra_closure_delays_like_a_holiday() -> None:
    assert release_at(date(2026, 3, 17), extra_closures=[date(2026, 3, 20)]) == utc(2026, 3, 23, 19)


def test_a_holiday_tuesday_moves_the_report_to_monday() -> None:
    assert report_dates(date(2018, 12, 17), date(2019, 1, 8)) == [
        date(2018, 12, 18),
        date(2018, 12, 24),
        date(2018, 12, 31),
        date(2019, 1, 8),
    ]
    assert report_dates(date(2025, 11, 10), date(2025, 11, 10)) == [date(2025, 11, 10)]  # Veterans Day Tuesday


def test_every_catch_up_week_is_a_report_date_released_after_it() -> None:
    for as_of, released in CATCH_UP.items():
        assert report_dates(as_of, as_of) == [as_of]
        assert released > as_of


def test_federal_holidays_of_2026() -> None:
    assert sorted(d for d in federal_holidays(2026)) == [
        date(2026, 1, 1),
        date(2026, 1, 19),
        date(2026, 2, 16),
        date(2026, 5, 25),
        date(2026, 6, 19),
        date(2026, 7, 3),  # July 4th is a Saturday
        date(2026, 9, 7),
        date(2026, 10, 12),
        date(2026, 11, 11),
        date(2026, 11, 26),
        date(2026, 12, 25),
    ]
