"""What health means, judged on the data clock: Globex hours (or a market's own), COT releases, settling states,
failures, the worst."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hydra_daemon.cme_sessions import CHICAGO, GLOBEX, MarketSchedule
from hydra_daemon.cot.calendar import release_time
from hydra_daemon.runtime.assessment import (
    HealthLimits,
    MarketView,
    PipelineView,
    Schedule,
    Status,
    Verdict,
    assess_pipeline,
    assess_store,
    cadence_s,
    expected_gap_s,
    lag_limit_s,
    worst,
)

LIMITS = HealthLimits(stale_after_s=900, cot_grace_s=6 * 3600)
TUESDAY_NOON = datetime(2026, 3, 10, 17, tzinfo=UTC)  # 12:00 Chicago: Globex open
SATURDAY = datetime(2026, 3, 7, 15, tzinfo=UTC)
DAEMON_START = TUESDAY_NOON - timedelta(hours=2)


MARKET_FIELDS = frozenset({"hours", "last_delivery", "last_record_time", "schema_record_times"})


def options(**changes: object) -> PipelineView:
    """An options pipeline of one market, HE (`hours`, `last_delivery`, `last_record_time` are HE's)."""
    he = MarketView("HE", last_delivery=TUESDAY_NOON - timedelta(seconds=30))
    view = PipelineView(
        name="options",
        schedule=Schedule.GLOBEX,
        schemas=("mbp-1", "definition", "statistics"),
        supervisor_state="running",
        state="streaming",
        since=DAEMON_START,
        markets=(he,),
    )
    return market(replace(view, **{k: v for k, v in changes.items() if k not in MARKET_FIELDS}), **changes)  # type: ignore[arg-type]


def market(view: PipelineView, **changes: object) -> PipelineView:
    """`view` with its only market changed (keys other than a market's are ignored)."""
    (only,) = view.markets
    mine = {k: v for k, v in changes.items() if k in MARKET_FIELDS}
    return replace(view, markets=(replace(only, **mine),))  # type: ignore[arg-type]


def test_streaming_with_fresh_data_in_open_market_is_ok() -> None:
    assert assess_pipeline(options(), TUESDAY_NOON, LIMITS) == Verdict(Status.OK)


def test_silence_in_open_market_beyond_the_cadence_is_degraded() -> None:
    verdict = assess_pipeline(options(last_delivery=TUESDAY_NOON - timedelta(seconds=901)), TUESDAY_NOON, LIMITS)
    assert verdict.status is Status.DEGRADED
    assert verdict.reasons == ("HE: no data for 901 s of open market (expected within 900 s)",)
    never = assess_pipeline(options(last_delivery=None), TUESDAY_NOON, LIMITS)
    assert never == Verdict(Status.DEGRADED, ("HE: no data yet after 7200 s of open market since the start",))
    bars = options(schemas=("ohlcv-1m",), last_delivery=None, since=TUESDAY_NOON - timedelta(seconds=59))
    assert assess_pipeline(bars, TUESDAY_NOON, LIMITS).status is Status.OK, "the first minute bar is not due yet"


def test_weekend_is_closed_not_degraded_and_the_open_after_it_starts_the_clock() -> None:
    friday_close = datetime(2026, 3, 6, 22, tzinfo=UTC)  # 16:00 Chicago (CST)
    verdict = assess_pipeline(options(last_delivery=friday_close, since=friday_close), SATURDAY, LIMITS)
    assert verdict.status is Status.CLOSED
    assert verdict.reasons == ("HE: market closed; Globex reopens 2026-03-08T22:00:00+00:00",)
    sunday_open = datetime(2026, 3, 8, 22, tzinfo=UTC)
    early = assess_pipeline(options(last_delivery=friday_close), sunday_open + timedelta(minutes=10), LIMITS)
    assert early.status is Status.OK, "ten open minutes of silence are within the limit"
    late = assess_pipeline(options(last_delivery=friday_close), sunday_open + timedelta(minutes=20), LIMITS)
    assert late.status is Status.DEGRADED


def test_the_cadence_follows_the_schemas() -> None:
    assert expected_gap_s(("mbp-1", "definition"), LIMITS) == 900
    assert expected_gap_s(("ohlcv-1d", "ohlcv-1m", "definition"), LIMITS) == 960
    assert expected_gap_s(("ohlcv-1d", "definition"), LIMITS) == 86_400 + 900
    assert expected_gap_s(("definition",), LIMITS) is None
    daily = options(schemas=("ohlcv-1d", "definition"), last_delivery=TUESDAY_NOON - timedelta(hours=12))
    assert assess_pipeline(daily, TUESDAY_NOON, LIMITS).status is Status.OK


@pytest.mark.parametrize("state", ["connecting", "reconnecting", "filling", "starting"])
def test_settling_states_are_degraded_even_when_closed(state: str) -> None:
    verdict = assess_pipeline(options(state=state, last_error="BentoError: reset"), SATURDAY, LIMITS)
    assert verdict.status is Status.DEGRADED
    assert verdict.reasons[0].startswith(state)


def test_supervisor_backoff_and_a_reason_from_the_pipeline_are_degraded() -> None:
    backoff = assess_pipeline(options(supervisor_state="backoff", last_error="OSError: x"), TUESDAY_NOON, LIMITS)
    assert backoff == Verdict(Status.DEGRADED, ("pipeline backoff after: OSError: x",))
    refused = assess_pipeline(options(problems=("Historical request refused: $12 > $5",)), TUESDAY_NOON, LIMITS)
    assert refused == Verdict(Status.DEGRADED, ("Historical request refused: $12 > $5",))


def test_refused_authentication_and_repeated_crashes_fail() -> None:
    auth = assess_pipeline(options(state="auth_refused", last_error="key rejected"), TUESDAY_NOON, LIMITS)
    assert auth == Verdict(Status.FAILED, ("authentication refused: key rejected",))
    crashes = assess_pipeline(options(crashes_in_row=5, last_error="ValueError: x"), SATURDAY, LIMITS)
    assert crashes == Verdict(Status.FAILED, ("crashed 5 times in a row: ValueError: x",))
    assert assess_pipeline(options(crashes_in_row=4), TUESDAY_NOON, LIMITS).status is Status.OK


def cot(now: datetime, seen: datetime | None) -> Verdict:
    view = PipelineView(
        name="cot",
        schedule=Schedule.COT,
        schemas=("cot",),
        supervisor_state="running",
        state="idle",
        since=now - timedelta(days=30),
        last_record_time=seen,
    )
    return assess_pipeline(view, now, LIMITS)


def test_cot_follows_its_release_calendar() -> None:
    from datetime import date

    release = release_time(date(2026, 3, 3))  # Friday Mar 6 15:30 New York
    previous = release_time(date(2026, 2, 24))
    assert cot(release + timedelta(hours=1), seen=release) == Verdict(Status.OK)
    assert cot(release + timedelta(hours=5), seen=previous) == Verdict(Status.OK), "within the grace period"
    overdue = cot(release + timedelta(hours=7), seen=previous)
    assert overdue.status is Status.DEGRADED
    assert overdue.reasons == (
        "COT release for 2026-03-03 (due 2026-03-06T20:30:00+00:00) not stored 7.0 h after release",
    )
    assert cot(release - timedelta(hours=1), seen=previous) == Verdict(Status.OK), "the next one is not due yet"
    closed = HealthLimits(cot_extra_closures=(date(2026, 3, 6),))  # a Friday closure moves the release to Monday
    view = PipelineView("cot", Schedule.COT, ("cot",), "running", "idle", release - timedelta(days=30))
    late_friday = release + timedelta(hours=7)
    assert assess_pipeline(replace(view, last_record_time=previous), late_friday, closed) == Verdict(Status.OK)


def test_cot_weeks_behind_stays_degraded_when_the_next_release_comes_out() -> None:
    """Stored through the 02-24 week; the 03-03 release (Fri 03-06) never came in. An hour after the 03-10 release
    (Fri 03-13, after the clocks changed) the missing week is 168 h overdue: a new release does not restart the
    grace period."""
    from datetime import date

    stored = release_time(date(2026, 2, 24))
    new_release = release_time(date(2026, 3, 10))
    assert cot(new_release - timedelta(hours=1), seen=stored).status is Status.DEGRADED
    verdict = cot(new_release + timedelta(hours=1), seen=stored)
    assert verdict == Verdict(
        Status.DEGRADED,
        ("COT release for 2026-03-03 (due 2026-03-06T20:30:00+00:00) not stored 168.0 h after release",),
    )


def test_store_map_and_problems() -> None:
    assert assess_store(0.5, [], LIMITS) == Verdict(Status.OK)
    assert assess_store(0.8, [], LIMITS) == Verdict(Status.DEGRADED, ("store map 80% full (degraded from 80%)",))
    assert assess_store(None, ["writer lease lost"], LIMITS) == Verdict(Status.FAILED, ("writer lease lost",))
    failing = "writes to store s3://host:bucket failing (503 SlowDown) writing options/HE.mbp-1"
    assert assess_store(0.1, [], LIMITS, [failing]) == Verdict(Status.DEGRADED, (failing,))
    assert assess_store(None, ["disk full"], LIMITS, [failing]) == Verdict(Status.FAILED, ("disk full",))


def test_worst_of_all_with_closed_counting_as_ok() -> None:
    ok, closed = Verdict(Status.OK), Verdict(Status.CLOSED)
    assert worst([]) is Status.OK
    assert worst([closed, closed]) is Status.CLOSED
    assert worst([ok, closed]) is Status.OK
    assert worst([ok, Verdict(Status.DEGRADED), closed]) is Status.DEGRADED
    assert worst([Verdict(Status.FAILED), Verdict(Status.DEGRADED)]) is Status.FAILED
    assert [s.severity for s in Status] == [0, 0, 1, 2]


def test_lagging_behind_the_market_is_degraded_weekends_excluded() -> None:
    assert lag_limit_s(("mbp-1", "definition"), LIMITS) == 900
    assert lag_limit_s(("ohlcv-1d", "definition"), LIMITS) == 2 * 86_400 + 900
    behind = options(last_record_time=TUESDAY_NOON - timedelta(seconds=901))
    assert assess_pipeline(behind, TUESDAY_NOON, LIMITS) == Verdict(
        Status.DEGRADED, ("HE: lagging: newest record 901 s of open market behind (limit 900 s)",)
    )
    assert assess_pipeline(options(last_record_time=TUESDAY_NOON - timedelta(seconds=30)), TUESDAY_NOON, LIMITS) == (
        Verdict(Status.OK)
    )
    sunday_open = datetime(2026, 3, 8, 22, tzinfo=UTC)
    friday_last = datetime(2026, 3, 6, 21, 59, tzinfo=UTC)
    monday = options(last_record_time=friday_last, last_delivery=sunday_open + timedelta(minutes=1))
    assert assess_pipeline(monday, sunday_open + timedelta(minutes=2), LIMITS).status is Status.OK
    daily = options(schemas=("ohlcv-1d", "definition"), last_record_time=datetime(2026, 3, 9, tzinfo=UTC))
    assert assess_pipeline(market(daily, last_delivery=TUESDAY_NOON), TUESDAY_NOON, LIMITS).status is Status.OK


LIVESTOCK = MarketSchedule.parse("08:30-13:05")


def chicago(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHICAGO).astimezone(UTC)  # type: ignore[misc]


def test_livestock_quotes_silent_after_their_close_are_closed_not_degraded() -> None:
    last = chicago(2026, 3, 10, 13, 4, 30)  # Tuesday, just before the 13:05 close
    he = options(hours=LIVESTOCK, last_delivery=last, last_record_time=last)
    verdict = assess_pipeline(he, chicago(2026, 3, 10, 15), LIMITS)
    assert verdict == Verdict(
        Status.CLOSED,
        (
            "HE: market closed; trades 08:30-13:05 America/Chicago on Globex trading days, "
            "reopens 2026-03-11T13:30:00+00:00",
        ),
    )
    assert assess_pipeline(he, chicago(2026, 3, 11, 8, 40), LIMITS) == Verdict(Status.OK), "ten open minutes"


def test_livestock_silent_in_their_hours_is_degraded_counting_only_those_hours() -> None:
    he = options(hours=LIVESTOCK, last_delivery=chicago(2026, 3, 10, 13, 4), since=chicago(2026, 3, 10, 6))
    verdict = assess_pipeline(he, chicago(2026, 3, 11, 10), LIMITS)
    assert verdict == Verdict(Status.DEGRADED, ("HE: no data for 5460 s of open market (expected within 900 s)",))
    bars = options(hours=LIVESTOCK, schemas=("ohlcv-1d", "ohlcv-1m", "definition"), last_delivery=None)
    started_open = replace(bars, since=chicago(2026, 3, 11, 8, 45))  # replays the open market's recent past
    assert assess_pipeline(started_open, chicago(2026, 3, 11, 8, 46, 1), LIMITS) == Verdict(
        Status.DEGRADED, ("HE: no data yet after 61 s of open market since the start",)
    )
    started_closed = replace(bars, since=chicago(2026, 3, 11, 8))  # nothing to replay: a delivery's allowance
    assert assess_pipeline(started_closed, chicago(2026, 3, 11, 8, 31, 1), LIMITS) == Verdict(Status.OK)
    assert assess_pipeline(started_closed, chicago(2026, 3, 11, 8, 46, 1), LIMITS) == Verdict(
        Status.DEGRADED, ("HE: no data yet after 961 s of open market since the start",)
    )
    lagging = options(hours=LIVESTOCK, last_record_time=chicago(2026, 3, 10, 12, 50))
    at_open, later = chicago(2026, 3, 11, 8, 30), chicago(2026, 3, 11, 8, 45)
    assert assess_pipeline(market(lagging, last_delivery=at_open), at_open, LIMITS) == Verdict(Status.OK), "900 s"
    assert assess_pipeline(market(lagging, last_delivery=later), later, LIMITS) == Verdict(
        Status.DEGRADED, ("HE: lagging: newest record 1800 s of open market behind (limit 900 s)",)
    )


def test_a_daily_bar_of_a_short_hours_market_is_due_every_trading_day() -> None:
    day = 4 * 3600 + 35 * 60
    assert cadence_s(("ohlcv-1d", "definition"), LIVESTOCK) == day
    assert expected_gap_s(("ohlcv-1d", "definition"), LIMITS, LIVESTOCK) == day + 900
    assert lag_limit_s(("ohlcv-1d", "definition"), LIMITS, LIVESTOCK) == 2 * day + 900
    assert cadence_s(("ohlcv-1d", "ohlcv-1m"), LIVESTOCK) == 60 and cadence_s(("ohlcv-1d",)) == 86_400
    monday_bar = datetime(2026, 3, 10, tzinfo=UTC)  # published at the end of its UTC day, after the 13:05 close
    daily = options(hours=LIVESTOCK, schemas=("ohlcv-1d", "definition"), last_delivery=monday_bar)
    assert assess_pipeline(daily, chicago(2026, 3, 10, 23), LIMITS).status is Status.CLOSED, "Tuesday's bar not due"
    missed = assess_pipeline(daily, chicago(2026, 3, 11, 9), LIMITS)
    assert missed == Verdict(Status.DEGRADED, ("HE: no data for 18300 s of open market (expected within 17400 s)",))


def test_daily_bars_that_stop_while_minute_bars_flow_are_degraded() -> None:
    """The market's own checks follow its fastest schema: a futures pipeline whose minute bars flowed while its daily
    bars had stopped (a subscription the gateway dropped) was `ok` for as long as that lasted (invariant 9)."""
    minute = chicago(2026, 3, 11, 9)  # Wednesday, HE open
    bars = options(
        hours=LIVESTOCK,
        schemas=("ohlcv-1d", "ohlcv-1m", "definition"),
        since=chicago(2026, 3, 9, 6),
        last_delivery=minute,
        last_record_time=minute,
    )
    day = 4 * 3600 + 35 * 60
    monday_bar, tuesday_bar = datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)
    fresh = market(bars, schema_record_times={"ohlcv-1m": minute, "ohlcv-1d": tuesday_bar})
    assert assess_pipeline(fresh, minute, LIMITS) == Verdict(Status.OK)
    stale = market(bars, schema_record_times={"ohlcv-1m": minute, "ohlcv-1d": monday_bar})
    lag = 2 * day + 30 * 60  # Monday's and Tuesday's sessions, and Wednesday's first half hour
    assert assess_pipeline(stale, minute, LIMITS) == Verdict(
        Status.DEGRADED,
        (f"HE: ohlcv-1d: newest record {lag} s of open market behind (limit {2 * day + 900} s)",),
    )
    never = market(bars, schema_record_times={"ohlcv-1m": minute})
    assert assess_pipeline(never, minute, LIMITS) == Verdict(
        Status.DEGRADED,
        (f"HE: ohlcv-1d: none in {lag} s of open market since the start (limit {2 * day + 900} s)",),
    )
    for view, status in ((fresh, Status.OK), (stale, Status.DEGRADED)):  # CL: the whole Globex session
        cl = replace(view, markets=(replace(view.markets[0], name="CL", hours=GLOBEX),))
        assert assess_pipeline(cl, minute, LIMITS).status is status
    quotes = options(schema_record_times={"mbp-1": TUESDAY_NOON})
    assert assess_pipeline(quotes, TUESDAY_NOON, LIMITS) == Verdict(Status.OK), "one schema with a cadence: no extra"


def he_and_cl(now: datetime, he: datetime | None, cl: datetime | None) -> Verdict:
    """One options session for HE (livestock hours) and CL (the whole session), last delivering at `he` and `cl`
    (their newest records stamped then too), judged at `now`."""
    view = replace(
        options(),
        since=chicago(2026, 3, 10, 6),
        markets=(
            MarketView("HE", LIVESTOCK, he, he),
            MarketView("CL", last_delivery=cl, last_record_time=cl),
        ),
    )
    return assess_pipeline(view, now, LIMITS)


def test_one_market_silent_in_its_hours_degrades_the_pipeline_while_another_delivers() -> None:
    now = chicago(2026, 3, 10, 11)
    verdict = he_and_cl(now, he=now - timedelta(seconds=1200), cl=now - timedelta(seconds=1))
    assert verdict == Verdict(Status.DEGRADED, ("HE: no data for 1200 s of open market (expected within 900 s)",))
    never = he_and_cl(chicago(2026, 3, 10, 9), he=None, cl=chicago(2026, 3, 10, 9))
    assert never == Verdict(Status.DEGRADED, ("HE: no data yet after 1800 s of open market since the start",))
    both = he_and_cl(now, he=now - timedelta(seconds=1200), cl=now - timedelta(seconds=1000))
    assert both.reasons == (
        "HE: no data for 1200 s of open market (expected within 900 s)",
        "CL: no data for 1000 s of open market (expected within 900 s)",
    )


def test_one_market_silent_outside_its_hours_is_ok_while_another_delivers() -> None:
    now = chicago(2026, 3, 10, 15)
    assert he_and_cl(now, he=chicago(2026, 3, 10, 13, 4), cl=now - timedelta(seconds=1)) == Verdict(Status.OK)


def test_markets_silent_outside_all_their_hours_are_closed() -> None:
    saturday = chicago(2026, 3, 7, 10)
    verdict = he_and_cl(saturday, he=chicago(2026, 3, 6, 13, 4), cl=chicago(2026, 3, 6, 15, 59))
    assert verdict == Verdict(
        Status.CLOSED,
        (
            "HE: market closed; trades 08:30-13:05 America/Chicago on Globex trading days, "
            "reopens 2026-03-09T13:30:00+00:00",
            "CL: market closed; Globex reopens 2026-03-08T22:00:00+00:00",
        ),
    )
