"""CME Globex trading sessions (pure): when a market is open, so health can tell a quiet weekend or a closed pit-hours
product from a stall.

Databento's GLBX definitions carry no session hours, so the schedule is the Globex calendar: the session of trading
date D runs from 17:00 America/Chicago on the previous calendar day to 16:00 on D (Sunday 17:00 opens Monday's),
Monday-Friday trading dates only, so the daily 16:00-17:00 maintenance break and the Friday 16:00 - Sunday 17:00
weekend are closed. CME holidays come from `holidays.financial_holidays("XCME")`: a full holiday removes that trading
date's session; a half day pauses it at 12:00 Chicago (10:30 before 2015).

Products with shorter hours trade only part of it: CME livestock (HE, LE, GF) futures and options trade on Globex
08:30-13:05 Chicago on each trading date. A `MarketSchedule` says so (`[[markets]] hours` in the config); every
function takes one, `GLOBEX` (the full session) by default. Holidays apply to it, and a half day cuts a window that
spans its close; a half day that is itself a US federal holiday (Martin Luther King Jr., Presidents', Memorial,
Juneteenth, Labor Day), on which Globex only pauses at noon, closes such a day-hours market: CME lists livestock as
closed then.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
from holidays.constants import HALF_DAY, PUBLIC

CHICAGO = ZoneInfo("America/Chicago")
SESSION_OPEN = time(17, 0)
SESSION_CLOSE = time(16, 0)
_FRIDAY = 4
_DAY = timedelta(days=1)
_MAX_SPAN = timedelta(days=400)
"""Open time is integrated over at most this span: callers compare it with limits of hours, not years."""
_HOURS = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")
HOURS_EXPECTED = (
    '"HH:MM-HH:MM" in America/Chicago, opening before closing and by 16:00 (the Globex close), like "08:30-13:05"'
)
"""What `MarketSchedule.parse` accepts."""


@dataclass(frozen=True)
class MarketSchedule:
    """When a market trades on Globex trading dates: the whole session (`hours` None: `GLOBEX`) or only this window
    of Chicago clock time on the trading date itself, within 00:00-16:00."""

    hours: tuple[time, time] | None = None

    @classmethod
    def parse(cls, text: str) -> MarketSchedule:
        """`"08:30-13:05"` -> that window; ValueError saying what is expected otherwise."""
        match = _HOURS.fullmatch(text)
        if match is None:
            raise ValueError(f"expected trading hours as {HOURS_EXPECTED}, got {text!r}")
        opens, closes = (time(int(match[i]), int(match[i + 1])) for i in (1, 3))
        if not opens < closes <= SESSION_CLOSE:
            raise ValueError(f"expected trading hours as {HOURS_EXPECTED}, got {text!r}")
        return cls((opens, closes))

    def __str__(self) -> str:
        """As written in the config ("08:30-13:05"), "Globex" for the whole session."""
        if self.hours is None:
            return "Globex"
        opens, closes = self.hours
        return f"{opens:%H:%M}-{closes:%H:%M}"

    @property
    def day_seconds(self) -> float | None:
        """Open seconds of a whole trading date within the hours; None for the whole Globex session."""
        if self.hours is None:
            return None
        opens, closes = self.hours
        return _clock_seconds(closes) - _clock_seconds(opens)


GLOBEX = MarketSchedule()


@dataclass(frozen=True)
class Session:
    """One open stretch of a trading date: the date and its UTC-aware open and close instants."""

    trading_date: date
    opens: datetime
    closes: datetime


def session_for(trading_date: date) -> Session | None:
    """The Globex session of `trading_date`, or None on weekends and CME holidays."""
    if trading_date.weekday() > _FRIDAY or trading_date in _closed_days(trading_date.year):
        return None
    previous = trading_date - _DAY
    opens = datetime.combine(previous, SESSION_OPEN, tzinfo=CHICAGO)
    close_clock = _half_day_close(trading_date) or SESSION_CLOSE
    closes = datetime.combine(trading_date, close_clock, tzinfo=CHICAGO)
    return Session(trading_date, opens.astimezone(UTC), closes.astimezone(UTC))


def sessions_on(trading_date: date, schedule: MarketSchedule = GLOBEX) -> tuple[Session, ...]:
    """The stretch `schedule` trades on `trading_date`: its hours within the Globex session (cut at a half day's
    close), or the whole session; none on weekends, CME holidays, federal holidays Globex only pauses on (day hours
    only) and half days closing before the hours open."""
    globex = session_for(trading_date)
    if globex is None or schedule.hours is None:
        return () if globex is None else (globex,)
    if trading_date in _holiday_half_days(trading_date.year):
        return ()
    opens, closes = schedule.hours
    start = datetime.combine(trading_date, opens, tzinfo=CHICAGO).astimezone(UTC)
    end = min(datetime.combine(trading_date, closes, tzinfo=CHICAGO).astimezone(UTC), globex.closes)
    return (Session(trading_date, start, end),) if start < end else ()


def session_at(t: datetime, schedule: MarketSchedule = GLOBEX) -> Session | None:
    """The session (a stretch of `schedule`'s hours) open at `t` (UTC-aware), or None when closed then."""
    local = _aware(t).astimezone(CHICAGO)
    trading_date = local.date() + _DAY if local.time() >= SESSION_OPEN else local.date()
    return next((s for s in sessions_on(trading_date, schedule) if s.opens <= t < s.closes), None)


def is_open(t: datetime, schedule: MarketSchedule = GLOBEX) -> bool:
    """True when the market trades at `t`."""
    return session_at(t, schedule) is not None


def next_open(t: datetime, schedule: MarketSchedule = GLOBEX) -> datetime:
    """The first instant at or after `t` when the market is open (`t` itself when open)."""
    day = _aware(t).astimezone(CHICAGO).date()
    for offset in range(15):
        for session in sessions_on(day + offset * _DAY, schedule):
            if session.closes > t:
                return max(session.opens, t)
    raise RuntimeError(f"no session of {schedule} within two weeks after {t.isoformat()}")


def open_seconds(start: datetime, end: datetime, schedule: MarketSchedule = GLOBEX) -> float:
    """Seconds of open market in [start, end) (0 when end <= start); spans longer than 400 days are cut there."""
    start, end = _aware(start), _aware(end)
    if end <= start:
        return 0.0
    start = max(start, end - _MAX_SPAN)
    total = 0.0
    day = start.astimezone(CHICAGO).date()
    last = end.astimezone(CHICAGO).date() + _DAY
    while day <= last:
        for session in sessions_on(day, schedule):
            overlap = (min(end, session.closes) - max(start, session.opens)).total_seconds()
            total += max(0.0, overlap)
        day += _DAY
    return total


def _clock_seconds(clock: time) -> int:
    return clock.hour * 3600 + clock.minute * 60


def _half_day_close(trading_date: date) -> time | None:
    if trading_date not in _half_days(trading_date.year):
        return None
    return time(12, 0) if trading_date.year >= 2015 else time(10, 30)


@functools.lru_cache(maxsize=64)
def _closed_days(year: int) -> frozenset[date]:
    return frozenset(holidays.financial_holidays("XCME", years=year, categories=(PUBLIC,)).keys())


@functools.lru_cache(maxsize=64)
def _half_days(year: int) -> frozenset[date]:
    return frozenset(holidays.financial_holidays("XCME", years=year, categories=(HALF_DAY,)).keys())


@functools.lru_cache(maxsize=64)
def _holiday_half_days(year: int) -> frozenset[date]:
    """Half days that are federal holidays themselves (observed dates included), not the eves of one."""
    return _half_days(year) & frozenset(holidays.US(years=year).keys())


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise TypeError(f"expected a timezone-aware datetime, got {t!r}")
    return t
