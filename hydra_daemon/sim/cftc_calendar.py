"""The simulated CFTC's own release calendar: when each weekly report comes out.

Written from the CFTC's published practice (see /work/shared/facts/cftc-cot.md), not from
`hydra_daemon.cot.calendar`: the simulator is the ground truth the production calendar is tested against, so it must
not share its code (a bug there would pass both sides), nor its holiday library.

- Positions are as of Tuesday, or Monday when that Tuesday is a federal holiday.
- The report comes out Friday 15:30 America/New_York; a federal holiday (or an extra closure, such as a national day
  of mourning) on Wednesday, Thursday or Friday of that week moves it to the next business day after Friday.
- Government shutdowns: the catch-up releases the CFTC announced replace the rule for the weeks they cover.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

NEW_YORK: Final = ZoneInfo("America/New_York")
RELEASE_AT: Final = time(15, 30)
MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY = range(5)

CATCH_UP: Final[Mapping[date, date]] = {
    # 2018-19 shutdown: resumed 2019-02-01, then twice weekly (Tuesdays and Fridays) until current on 2019-03-08.
    date(2018, 12, 24): date(2019, 2, 1),
    date(2018, 12, 31): date(2019, 2, 5),
    date(2019, 1, 8): date(2019, 2, 8),
    date(2019, 1, 15): date(2019, 2, 12),
    date(2019, 1, 22): date(2019, 2, 15),
    date(2019, 1, 29): date(2019, 2, 19),
    date(2019, 2, 5): date(2019, 2, 22),
    date(2019, 2, 12): date(2019, 2, 26),
    date(2019, 2, 19): date(2019, 3, 1),
    date(2019, 2, 26): date(2019, 3, 5),
    date(2019, 3, 5): date(2019, 3, 8),
    # Oct-Nov 2025 shutdown: the CFTC's catch-up schedule, normal again from as_of 2026-01-20.
    date(2025, 9, 30): date(2025, 11, 19),
    date(2025, 10, 7): date(2025, 11, 21),
    date(2025, 10, 14): date(2025, 11, 25),
    date(2025, 10, 21): date(2025, 12, 2),
    date(2025, 10, 28): date(2025, 12, 5),
    date(2025, 11, 4): date(2025, 12, 9),
    date(2025, 11, 10): date(2025, 12, 12),
    date(2025, 11, 18): date(2025, 12, 16),
    date(2025, 11, 25): date(2025, 12, 19),
    date(2025, 12, 2): date(2025, 12, 23),
    date(2025, 12, 9): date(2025, 12, 30),
    date(2025, 12, 16): date(2026, 1, 6),
    date(2025, 12, 23): date(2026, 1, 9),
    date(2025, 12, 30): date(2026, 1, 13),
    date(2026, 1, 6): date(2026, 1, 16),
    date(2026, 1, 13): date(2026, 1, 20),
}
"""as_of -> release date (15:30 New York) of the weeks a shutdown catch-up schedule covered."""

DAYS_OF_MOURNING: Final = (date(2018, 12, 5), date(2025, 1, 9))
"""One-off federal closures by executive order (Presidents Bush and Carter): closed like a holiday."""


def report_dates(start: date, end: date) -> list[date]:
    """The as_of dates in [start, end]: each week's Tuesday, or its Monday when the Tuesday is a federal holiday."""
    tuesday = start + timedelta(days=TUESDAY - start.weekday())  # the Tuesday of start's (Monday-first) week
    dates = []
    while tuesday - timedelta(days=1) <= end:
        as_of = tuesday - timedelta(days=1) if _holiday(tuesday) else tuesday
        if start <= as_of <= end:
            dates.append(as_of)
        tuesday += timedelta(days=7)
    return dates


def release_at(as_of: date, extra_closures: Collection[date] = ()) -> datetime:
    """The UTC instant the report about `as_of` is published."""
    day = CATCH_UP.get(as_of) or _rule_release_day(as_of, frozenset(extra_closures))
    return datetime.combine(day, RELEASE_AT, tzinfo=NEW_YORK).astimezone(UTC)


def _rule_release_day(as_of: date, closures: frozenset[date]) -> date:
    friday = as_of + timedelta(days=FRIDAY - as_of.weekday())
    if not any(_closed(friday - timedelta(days=n), closures) for n in range(3)):
        return friday
    day = friday + timedelta(days=1)
    while day.weekday() > FRIDAY or _closed(day, closures):
        day += timedelta(days=1)
    return day


def _closed(day: date, closures: frozenset[date]) -> bool:
    return day in closures or day in DAYS_OF_MOURNING or _holiday(day)


def _holiday(day: date) -> bool:
    # A Saturday New Year's Day is observed on the Friday before it, in the previous year.
    return day in federal_holidays(day.year) or day in federal_holidays(day.year + 1)


@functools.lru_cache(maxsize=64)
def federal_holidays(year: int) -> frozenset[date]:
    """US federal holidays (5 U.S.C. 6103) as observed in `year`'s calendar: Saturday -> Friday, Sunday -> Monday."""
    fixed = [date(year, 1, 1), date(year, 7, 4), date(year, 11, 11), date(year, 12, 25)]
    if year >= 2021:
        fixed.append(date(year, 6, 19))  # Juneteenth, a federal holiday since June 2021
    floating = [
        _nth_weekday(year, 1, MONDAY, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, MONDAY, 3),  # Washington's Birthday
        _nth_weekday(year, 6, MONDAY, 1) - timedelta(days=7),  # Memorial Day: the last Monday of May
        _nth_weekday(year, 9, MONDAY, 1),  # Labor Day
        _nth_weekday(year, 10, MONDAY, 2),  # Columbus Day
        _nth_weekday(year, 11, THURSDAY, 4),  # Thanksgiving
    ]
    return frozenset([*map(_observed, fixed), *floating])


def _observed(day: date) -> date:
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
