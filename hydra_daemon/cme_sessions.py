"""CME Globex trading sessions (pure): when the market is open, so health can tell a quiet weekend from a stall.

Databento's GLBX definitions carry no session hours, so the schedule is the Globex calendar: the session of trading
date D runs from 17:00 America/Chicago on the previous calendar day to 16:00 on D (Sunday 17:00 opens Monday's),
Monday-Friday trading dates only, so the daily 16:00-17:00 maintenance break and the Friday 16:00 - Sunday 17:00
weekend are closed. CME holidays come from `holidays.financial_holidays("XCME")`: a full holiday removes that trading
date's session; a half day pauses it at 12:00 Chicago (10:30 before 2015). Products with shorter pit-era hours (e.g.
livestock 08:30-13:05) still stream definitions and statistics on Globex; health uses this calendar for all of them.
"""

from __future__ import annotations

import functools
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


@dataclass(frozen=True)
class Session:
    """One Globex session: trading date and its UTC-aware open and close instants."""

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


def session_at(t: datetime) -> Session | None:
    """The session open at `t` (UTC-aware), or None when Globex is closed then."""
    local = _aware(t).astimezone(CHICAGO)
    trading_date = local.date() + _DAY if local.time() >= SESSION_OPEN else local.date()
    session = session_for(trading_date)
    if session is None or not session.opens <= t < session.closes:
        return None
    return session


def is_open(t: datetime) -> bool:
    """True when Globex trades at `t`."""
    return session_at(t) is not None


def next_open(t: datetime) -> datetime:
    """The first instant at or after `t` when Globex is open (`t` itself when open)."""
    if is_open(t):
        return t
    day = _aware(t).astimezone(CHICAGO).date()
    for offset in range(15):
        session = session_for(day + offset * _DAY)
        if session is not None and session.closes > t:
            return max(session.opens, t)
    raise RuntimeError(f"no Globex session within two weeks after {t.isoformat()}")


def open_seconds(start: datetime, end: datetime) -> float:
    """Seconds of open market in [start, end) (0 when end <= start); spans longer than 400 days are cut there."""
    start, end = _aware(start), _aware(end)
    if end <= start:
        return 0.0
    start = max(start, end - _MAX_SPAN)
    total = 0.0
    day = start.astimezone(CHICAGO).date()
    last = end.astimezone(CHICAGO).date() + _DAY
    while day <= last:
        session = session_for(day)
        if session is not None:
            overlap = (min(end, session.closes) - max(start, session.opens)).total_seconds()
            total += max(0.0, overlap)
        day += _DAY
    return total


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


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise TypeError(f"expected a timezone-aware datetime, got {t!r}")
    return t
