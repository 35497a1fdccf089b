"""What health means (pure): each pipeline's status from its state and the source's schedule, on the data's clock.

- ``ok``: delivering data as the schedule predicts (Globex: every market of the pipeline delivered records, and
  since its last ones no more of its open market than the schemas' cadence plus `stale_after_s`; before its first
  ones, no more than the cadence, since startup replays the recent past; COT: the latest due release is stored).
- ``closed``: healthy and the market is closed now (weekend, daily break, CME holiday, outside a market's configured
  `hours`: livestock trade 08:30-13:05 Chicago); a Globex pipeline only when every one of its markets is. Counts as
  ok.
- ``degraded``: connecting, reconnecting, filling a gap, restarting, no data for longer than the schedule allows,
  lagging (the newest stored record trails the data clock by more open market than the schedule allows),
  a COT release overdue beyond the grace period, a refused Historical request, the store map at or above 80 %.
- ``failed``: authentication refused, repeated crashes, storage full or lease lost.

The overall status is the worst of them; `hydra-daemon health` exits 0 (ok/closed), 1 (degraded), 2 (failed).
Every instant here is on the data clock (the venue's clock in tests), so an accelerated simulation is judged by
its own time.

A Globex pipeline (futures, options) runs one Live session for all its markets, so its records are not evidence that
each market delivers: each market is judged on its own deliveries and its own `hours` (`cme_sessions.MarketSchedule`:
the Globex session, or the hours it trades) and the pipeline's verdict is the worst of them, each reason naming its
market. HE silent during HE's hours is degraded while CL flows; HE silent after 13:05 is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from hydra_daemon import cme_sessions
from hydra_daemon.cme_sessions import GLOBEX, MarketSchedule
from hydra_daemon.cot.calendar import latest_as_of_released, next_release_after, release_time
from hydra_daemon.ingest import PipelineState
from hydra_daemon.runtime.supervisor import SupervisorState


class Status(StrEnum):
    OK = "ok"
    CLOSED = "closed"
    DEGRADED = "degraded"
    FAILED = "failed"

    @property
    def severity(self) -> int:
        """0 ok/closed, 1 degraded, 2 failed: also the exit code of `hydra-daemon health`."""
        return {Status.OK: 0, Status.CLOSED: 0, Status.DEGRADED: 1, Status.FAILED: 2}[self]


class Schedule(StrEnum):
    """Which calendar predicts a pipeline's data."""

    GLOBEX = "globex"
    COT = "cot"
    NONE = "none"


@dataclass(frozen=True)
class Verdict:
    """A status and the reasons for it (empty for a plain ok)."""

    status: Status
    reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"status": self.status.value, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class HealthLimits:
    """Thresholds from the `[health]` config table."""

    stale_after_s: float = 900.0
    cot_grace_s: float = 6 * 3600.0
    map_degraded_fraction: float = 0.8
    failed_after_crashes: int = 5
    cot_extra_closures: tuple[date, ...] = ()
    """`[cot] extra_closures`: federal closures that move CFTC releases (the COT pipeline schedules by them too)."""


SCHEMA_CADENCE_S = {"ohlcv-1s": 1, "ohlcv-1m": 60, "ohlcv-1h": 3600, "ohlcv-1d": 86_400, "mbp-1": 0, "trades": 0}
"""Seconds between records a schema predicts while the market trades (bars once per interval, quotes any time);
schemas missing here (definition, statistics) predict nothing."""

SETTLING_STATES = frozenset(
    {PipelineState.STARTING, PipelineState.CONNECTING, PipelineState.RECONNECTING, PipelineState.FILLING}
)
"""Pipeline states in which no data can flow yet: degraded while they last."""


@dataclass(frozen=True)
class MarketView:
    """One market of a Globex pipeline, on the data clock: when it trades, when records of it last arrived (None:
    not since the daemon started, then the pipeline's `since` counts), the newest one's time, and per schema the
    newest record's time (a schema absent: none since the daemon started)."""

    name: str
    hours: MarketSchedule = GLOBEX
    last_delivery: datetime | None = None
    last_record_time: datetime | None = None
    schema_record_times: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineView:
    """What the verdict of one pipeline depends on. Times are UTC-aware instants on the data clock.

    `markets`: a Globex pipeline's markets (every market it subscribes is judged: the config gives each market both
    a futures and an options root, so each is expected in both pipelines);
    `last_record_time`: COT's scheduled release of the newest week stored, of the market furthest behind;
    `crashes_in_row`: restarts since the last healthy run; `problems`: extra degraded reasons (refused requests...).
    """

    name: str
    schedule: Schedule
    schemas: tuple[str, ...]
    supervisor_state: str
    state: str
    since: datetime
    markets: tuple[MarketView, ...] = ()
    last_record_time: datetime | None = None
    crashes_in_row: int = 0
    last_error: str | None = None
    problems: tuple[str, ...] = ()


def cadence_s(schemas: Iterable[str], hours: MarketSchedule = GLOBEX) -> float | None:
    """Open-market seconds between records the schemas predict (the shortest; None: they predict nothing). A bar
    longer than a trading day of `hours` (a daily bar of a livestock market: 4.6 open hours) comes once a trading day,
    so its cadence is that day's open time, not 86,400 s (five such days)."""
    cadences = [SCHEMA_CADENCE_S[s] for s in schemas if s in SCHEMA_CADENCE_S]
    if not cadences:
        return None
    day = hours.day_seconds
    return min(cadences) if day is None else min(*cadences, day)


def expected_gap_s(schemas: Iterable[str], limits: HealthLimits, hours: MarketSchedule = GLOBEX) -> float | None:
    """Open-market seconds without any record before a Globex pipeline is stale; None when its schemas predict
    nothing."""
    cadence = cadence_s(schemas, hours)
    return None if cadence is None else cadence + limits.stale_after_s


def lag_limit_s(schemas: Iterable[str], limits: HealthLimits, hours: MarketSchedule = GLOBEX) -> float | None:
    """Open-market seconds the newest stored record's time may trail the data clock before a Globex pipeline is
    lagging (catching up, or committing slower than the feed): two of its cadences (a bar is stamped with its open
    and published at its close) plus `stale_after_s`; None when its schemas predict nothing."""
    cadence = cadence_s(schemas, hours)
    return None if cadence is None else 2 * cadence + limits.stale_after_s


def open_lag_s(last_record_time: datetime | None, now: datetime, hours: MarketSchedule = GLOBEX) -> float | None:
    """Open-market seconds between the newest stored record's time and `now` (a weekend adds nothing)."""
    return None if last_record_time is None else cme_sessions.open_seconds(last_record_time, now, hours)


def assess_pipeline(view: PipelineView, now: datetime, limits: HealthLimits) -> Verdict:
    """The status of one pipeline at `now` (data clock)."""
    if view.state == PipelineState.AUTH_REFUSED:
        return Verdict(Status.FAILED, (f"authentication refused: {view.last_error}",))
    if view.crashes_in_row >= limits.failed_after_crashes:
        return Verdict(Status.FAILED, (f"crashed {view.crashes_in_row} times in a row: {view.last_error}",))
    reasons = [*view.problems]
    if view.supervisor_state != SupervisorState.RUNNING:
        reasons.append(f"pipeline {view.supervisor_state}" + (f" after: {view.last_error}" if view.last_error else ""))
    elif view.state in SETTLING_STATES:
        reasons.append(view.state + (f" after: {view.last_error}" if view.state == PipelineState.RECONNECTING else ""))
    scheduled = _scheduled(view, now, limits)
    if reasons:
        return Verdict(Status.DEGRADED, tuple(reasons) + scheduled.reasons)
    return scheduled


def _scheduled(view: PipelineView, now: datetime, limits: HealthLimits) -> Verdict:
    if view.schedule is Schedule.GLOBEX:
        return _globex(view, now, limits)
    if view.schedule is Schedule.COT:
        return _cot(view, now, limits)
    return Verdict(Status.OK)


def _globex(view: PipelineView, now: datetime, limits: HealthLimits) -> Verdict:
    """The worst of the markets' verdicts, with the reasons of the markets that have it (named)."""
    verdicts = assess_markets(view, now, limits)
    status = worst(verdicts.values())
    return Verdict(
        status, tuple(f"{name}: {r}" for name, v in verdicts.items() if v.status is status for r in v.reasons)
    )


def assess_markets(view: PipelineView, now: datetime, limits: HealthLimits) -> dict[str, Verdict]:
    """Each market of a Globex pipeline judged by its own deliveries and hours (reasons without its name)."""
    return {market.name: _market(market, view, now, limits) for market in view.markets}


def _market(market: MarketView, view: PipelineView, now: datetime, limits: HealthLimits) -> Verdict:
    silence = _silence(market, view, now, limits)
    if silence is not None:
        return Verdict(Status.DEGRADED, (silence,))
    limit = lag_limit_s(view.schemas, limits, market.hours)
    lag = open_lag_s(market.last_record_time, now, market.hours)
    if limit is not None and lag is not None and lag > limit:
        return Verdict(
            Status.DEGRADED, (f"lagging: newest record {lag:.0f} s of open market behind (limit {limit:.0f} s)",)
        )
    behind = _slow_schemas_behind(market, view, now, limits)
    if behind:
        return Verdict(Status.DEGRADED, behind)
    if not cme_sessions.is_open(now, market.hours):
        return Verdict(Status.CLOSED, (_closed_reason(market.hours, now),))
    return Verdict(Status.OK)


def _slow_schemas_behind(
    market: MarketView, view: PipelineView, now: datetime, limits: HealthLimits
) -> tuple[str, ...]:
    """The schemas slower than the market's fastest (daily bars beside minute bars) whose newest record trails `now`
    by more open market than their own `lag_limit_s`: the market's own checks follow its fastest schema, so daily
    bars that stopped while minute bars flow were `ok` (invariant 9). A schema with no record since the daemon
    started is judged from `view.since`."""
    fastest = cadence_s(view.schemas, market.hours)
    reasons = []
    for schema in view.schemas:
        limit = lag_limit_s((schema,), limits, market.hours)
        if limit is None or fastest is None or cadence_s((schema,), market.hours) == fastest:
            continue
        newest = market.schema_record_times.get(schema)
        if newest is not None:
            lag = cme_sessions.open_seconds(newest, now, market.hours)
            if lag > limit:
                reasons.append(f"{schema}: newest record {lag:.0f} s of open market behind (limit {limit:.0f} s)")
            continue
        silent = cme_sessions.open_seconds(view.since, now, market.hours)
        if silent > limit:
            reasons.append(f"{schema}: none in {silent:.0f} s of open market since the start (limit {limit:.0f} s)")
    return tuple(reasons)


def _closed_reason(hours: MarketSchedule, now: datetime) -> str:
    reopens = cme_sessions.next_open(now, hours).isoformat()
    if hours == GLOBEX:
        return f"market closed; Globex reopens {reopens}"
    return f"market closed; trades {hours} America/Chicago on Globex trading days, reopens {reopens}"


def _silence(market: MarketView, view: PipelineView, now: datetime, limits: HealthLimits) -> str | None:
    """Why `market`'s open market has been silent too long, or None. Before its first delivery, a daemon started in
    open market is allowed only the schemas' cadence (startup replays the recent past, so data is due at once); one
    started while the market was closed, with nothing to replay, the same as after a delivery."""
    gap = expected_gap_s(view.schemas, limits, market.hours)
    if gap is None:
        return None
    if market.last_delivery is None:
        silent = cme_sessions.open_seconds(view.since, now, market.hours)
        replayed = cme_sessions.is_open(view.since, market.hours)
        if silent > (gap - limits.stale_after_s if replayed else gap):
            return f"no data yet after {silent:.0f} s of open market since the start"
        return None
    silent = cme_sessions.open_seconds(market.last_delivery, now, market.hours)
    if silent > gap:
        return f"no data for {silent:.0f} s of open market (expected within {gap:.0f} s)"
    return None


def _cot(view: PipelineView, now: datetime, limits: HealthLimits) -> Verdict:
    """Degraded once the oldest release not stored is `cot_grace_s` overdue: the first after the newest stored one
    (the latest due with nothing stored), so a pipeline weeks behind is not `ok` again at each new release."""
    due = latest_as_of_released(now, limits.cot_extra_closures)
    due_at = release_time(due, limits.cot_extra_closures)
    if view.last_record_time is not None and view.last_record_time >= due_at:
        return Verdict(Status.OK)
    if view.last_record_time is not None:
        due, due_at = next_release_after(view.last_record_time, limits.cot_extra_closures)
    overdue = now - due_at
    if overdue > timedelta(seconds=limits.cot_grace_s):
        hours = overdue.total_seconds() / 3600
        return Verdict(
            Status.DEGRADED,
            (f"COT release for {due.isoformat()} (due {due_at.isoformat()}) not stored {hours:.1f} h after release",),
        )
    return Verdict(Status.OK)


def assess_store(
    map_fraction: float | None, problems: Sequence[str], limits: HealthLimits, retrying: Sequence[str] = ()
) -> Verdict:
    """The store's status: failed on `problems` (full, not writable, lease lost), degraded while writes fail and are
    retried (`retrying`: an S3 outage) or when the map is nearly full."""
    if problems:
        return Verdict(Status.FAILED, tuple(problems))
    reasons = [*retrying]
    if map_fraction is not None and map_fraction >= limits.map_degraded_fraction:
        reasons.append(f"store map {map_fraction:.0%} full (degraded from {limits.map_degraded_fraction:.0%})")
    return Verdict(Status.DEGRADED, tuple(reasons)) if reasons else Verdict(Status.OK)


def worst(verdicts: Iterable[Verdict]) -> Status:
    """The most severe status (ok when there is none); `closed` only when every verdict is closed."""
    statuses = [v.status for v in verdicts]
    if not statuses:
        return Status.OK
    top = max(s.severity for s in statuses)
    if top > 0:
        return Status.DEGRADED if top == 1 else Status.FAILED
    return Status.CLOSED if all(s is Status.CLOSED for s in statuses) else Status.OK
