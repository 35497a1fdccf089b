"""When a UTC day's data is complete, so the lake can publish it once (pure).

Partitions are UTC calendar days. A day is complete when no record indexed in it can still arrive live: at its
end, or — when a CME Globex session is open across midnight UTC, as on every Sunday-Thursday night — at that session's
close (16:00 America/Chicago, `cme_sessions`), by which time the daemon has taken its session-end chain snapshot
and flushed. The exporter adds `[lake] export_delay_s` on top so Historical gap fills after a reconnect land first.
It waits for the whole Globex session even for markets with shorter `hours` (livestock close at 13:05): their
definitions and statistics still stream across midnight UTC, and a later export is only later, never incomplete.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from hydra_daemon.cme_sessions import session_at

_DAY = timedelta(days=1)


def complete_at(day: date) -> datetime:
    """When UTC `day` is complete: its end, or the close of the Globex session open at its end."""
    end = datetime.combine(day + _DAY, time(0), tzinfo=UTC)
    session = session_at(end)
    return end if session is None else session.closes


def last_complete_day(now: datetime, delay: timedelta) -> date:
    """The newest UTC day complete at least `delay` before `now` (UTC-aware)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"last_complete_day: now={now!r} must be timezone-aware (UTC)")
    cutoff = now - delay
    day = cutoff.astimezone(UTC).date() - _DAY
    while complete_at(day) > cutoff:
        day -= _DAY
    return day
