"""CFTC Commitments-of-Traders release calendar: when the report about an `as_of` date became public.

Rule: positions as of Tuesday close (Monday when Tuesday is a US federal holiday) are released on the Friday of that
week at 15:30 America/New_York; a federal holiday or configured extra closure on Wednesday-Friday of that week pushes
the release to the next business day after Friday. Irregular releases (government-shutdown catch-up schedules) come
from the override table shipped as `release_overrides.csv`, which wins over the rule.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

import holidays

NEW_YORK = ZoneInfo("America/New_York")
RELEASE_CLOCK = time(15, 30)
_OVERRIDES_FILE = "release_overrides.csv"
_TUESDAY, _FRIDAY = 1, 4
PAST_CLOSURES = frozenset({date(2018, 12, 5), date(2025, 1, 9)})
"""Federal closures by executive order that holiday libraries miss and that fell on Wednesday-Friday of a release
week: the national days of mourning for Presidents Bush (Wed) and Carter (Thu). Counting them delays the release to
Monday; if the CFTC published on Friday anyway, `available_at` is three days late, never early. Past Christmas Eve
closures fell in weeks Christmas already delays; future ones go in `[cot] extra_closures`."""


def release_time(as_of: date, extra_closures: Collection[date] = ()) -> datetime:
    """UTC-aware instant at which the COT report for positions `as_of` was (or will be) published.

    `extra_closures` are federal closures missing from holiday libraries (executive orders, e.g. Dec 24 in some
    years); they delay the rule-based release like holidays do but never change an override-table row.
    """
    _require_date(as_of, "as_of")
    closures = _closure_set(extra_closures)
    day = _release_date(as_of, closures)
    return datetime.combine(day, RELEASE_CLOCK, tzinfo=NEW_YORK).astimezone(UTC)


def weekly_as_of_dates(start: date, end: date) -> list[date]:
    """Scheduled report dates in [start, end]: each week's Tuesday, or its Monday when Tuesday is a federal holiday."""
    _require_date(start, "start")
    _require_date(end, "end")
    tuesday = start - timedelta(days=start.weekday() - _TUESDAY)
    dates = []
    while tuesday - timedelta(days=1) <= end:
        as_of = tuesday - timedelta(days=1) if _is_federal_holiday(tuesday) else tuesday
        if start <= as_of <= end:
            dates.append(as_of)
        tuesday += timedelta(days=7)
    return dates


def next_release_after(t: datetime, extra_closures: Collection[date] = ()) -> tuple[date, datetime]:
    """The next scheduled `as_of` whose release time is strictly after `t`, and that release time (UTC)."""
    local_day = _require_aware(t, "t").astimezone(NEW_YORK).date()
    closures = _closure_set(extra_closures)
    for as_of in weekly_as_of_dates(local_day - _lookback(), local_day + timedelta(days=14)):
        released = release_time(as_of, closures)
        if released > t:
            return as_of, released
    raise RuntimeError(f"no COT release scheduled within two weeks after {t.isoformat()}: check extra_closures")


def latest_as_of_released(t: datetime, extra_closures: Collection[date] = ()) -> date:
    """The most recent scheduled `as_of` whose report was public at `t` (release time <= t)."""
    local_day = _require_aware(t, "t").astimezone(NEW_YORK).date()
    closures = _closure_set(extra_closures)
    released = [
        as_of for as_of in weekly_as_of_dates(local_day - _lookback(), local_day) if release_time(as_of, closures) <= t
    ]
    return max(released)


def release_overrides() -> Mapping[date, date]:
    """The shipped override table: as_of -> release date (15:30 America/New_York)."""
    return _load_overrides()


def _release_date(as_of: date, closures: frozenset[date]) -> date:
    override = _load_overrides().get(as_of)
    if override is not None:
        return override
    if as_of.weekday() >= _FRIDAY:
        raise ValueError(
            f"as_of {as_of.isoformat()} is a {as_of:%A}; COT positions are dated Monday-Thursday (normally Tuesday): "
            "pass the file's As_of_Date_In_Form_YYMMDD"
        )
    friday = as_of + timedelta(days=_FRIDAY - as_of.weekday())
    wednesday = friday - timedelta(days=2)
    if not any(_is_closed(wednesday + timedelta(days=i), closures) for i in range(3)):
        return friday
    day = friday + timedelta(days=1)
    while day.weekday() > _FRIDAY or _is_closed(day, closures):
        day += timedelta(days=1)
    return day


def _is_closed(day: date, closures: frozenset[date]) -> bool:
    return day in closures or day in PAST_CLOSURES or _is_federal_holiday(day)


def _is_federal_holiday(day: date) -> bool:
    return day in _federal_holidays(day.year)


@functools.lru_cache(maxsize=256)
def _federal_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("US", years=year).keys())


@functools.lru_cache(maxsize=1)
def _load_overrides() -> Mapping[date, date]:
    text = resources.files("hydra_daemon.cot").joinpath(_OVERRIDES_FILE).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    table: dict[date, date] = {}
    for row in csv.DictReader(lines):
        as_of, released = date.fromisoformat(row["as_of"]), date.fromisoformat(row["release_date"])
        if released <= as_of or as_of in table:
            raise ValueError(f"{_OVERRIDES_FILE}: bad or duplicate row {row}")
        table[as_of] = released
    return table


def _lookback() -> timedelta:
    """How far back an as_of can lie and still be unreleased: the largest override lag plus two weeks."""
    lags = [released - as_of for as_of, released in _load_overrides().items()]
    return max(lags, default=timedelta(0)) + timedelta(days=14)


def _closure_set(extra_closures: Collection[date]) -> frozenset[date]:
    if isinstance(extra_closures, str | date):
        raise TypeError(f"extra_closures must be a collection of datetime.date, got {extra_closures!r}")
    for day in extra_closures:
        _require_date(day, "extra_closures item")
    return frozenset(extra_closures)


def _require_date(value: object, name: str) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(f"{name} must be a datetime.date (not a datetime or string), got {value!r}")
    return value


def _require_aware(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise TypeError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value
