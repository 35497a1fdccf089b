"""Options history from Databento Historical through the live pipeline's own code: `OptionsSink`, its `ChainBook`,
event-time snapshots and per-expiry features, so a backfilled day is stored exactly as a captured one.

For one market over [start, end) it requests, for the options parent (``HE.OPT``) and the underlying futures
parent (``HE.FUT``), ``definition``, ``statistics`` and ``mbp-1`` in consecutive windows of `WINDOW_NS`, every
schema over the same window, and feeds each window to the sink at once — the chain book orders the records by
``ts_recv`` and snapshots the boundaries they cross, as it does with live batches (see `ChainBook.ingest`). Chain
snapshots and features get the same times and ``available_at`` (the snapshot time) as live capture; only
``ingested_at`` (when the row was stored) tells them apart. Where the records go quiet for `snapshot_interval_s`
(the daily break, a weekend) the session ends as in live capture (`OptionsSink.end_session`: a snapshot at the last
record's time).

Before `start` the chains are warmed up from `WARMUP_NS` of history (applied without snapshots and without storing,
like the warm start after a restart), so the first snapshots of the range hold the quotes and open interest live
capture would have held; definitions of the `DEFINITION_LOOKBACK_NS` before that teach the instruments.

Quotes are ``mbp-1``: the only top-of-book schema whose chains equal live capture's (every quote change at its own
``ts_recv``); ``bbo-1m``/``cbbo-1m`` are far smaller but sample the book at minute ends with interval-end times, so
snapshots built from them would differ from captured ones (and could not be taken more often than a minute). The
cost guard prices the whole plan first (`--dry-run` prints it). Idempotent: the writer's watermarks drop stored rows
and the sink stores only snapshots newer than the newest stored one. Sync (blocking HTTP and ArcticDB).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import databento
import numpy as np
import pandas as pd
import structlog

from hydra_daemon.capture.commit import configured_writer, seed_symbols
from hydra_daemon.config import Config
from hydra_daemon.databento.cost_guard import CostGuard, HistoricalRequest, Quote
from hydra_daemon.databento.decode import MarketFrame, SymbolMap
from hydra_daemon.databento.historical_fill import NS_PER_DAY, NS_PER_S, HistoricalSource
from hydra_daemon.ingest import PipelineStats
from hydra_daemon.options.book import stream_parents
from hydra_daemon.options.pipeline import OPTION_SCHEMAS, OptionsSink
from hydra_daemon.redaction import register_secret
from hydra_daemon.secrets import load_api_key
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.symbols import FEATURES, OPTIONS

log = structlog.get_logger()

Progress = Callable[[int, int, int], None]
"""progress(done_requests, total_requests, records_so_far), called after each Historical request."""

WINDOW_NS = 6 * 3600 * 1_000_000_000
"""Every schema is requested over the same window, so the chain book sees each window's records together."""
WARMUP_NS = NS_PER_DAY
"""History applied before `start` (not stored, no snapshots) so the chains start the range as live capture has them."""
DEFINITION_LOOKBACK_NS = 4 * NS_PER_DAY
"""Definitions are published once per trading day: look back this far to learn instruments listed before."""


@dataclass(frozen=True)
class Window:
    """One window's requests (every parent × schema over [start_ns, end_ns)); `store` False for the warm-up."""

    start_ns: int
    end_ns: int
    requests: tuple[tuple[str, HistoricalRequest], ...]
    store: bool


@dataclass(frozen=True)
class OptionsBackfillPlan:
    """The requests of an options backfill, in order: definitions look-back, warm-up, then the range by window."""

    source: HistoricalSource
    market: str
    parents: dict[str, str]
    lookback: tuple[tuple[str, HistoricalRequest], ...]
    windows: tuple[Window, ...]

    @property
    def all_requests(self) -> tuple[HistoricalRequest, ...]:
        return tuple(r for _, r in self.lookback) + tuple(r for w in self.windows for _, r in w.requests)


def _utc_ns(value: datetime | pd.Timestamp, name: str) -> int:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise ValueError(f"backfill {name} must be timezone-aware (UTC), got {value!r}")
    return int(stamp.tz_convert("UTC").value)


def plan_options_backfill(
    config: Config, market: str, start: datetime | pd.Timestamp, end: datetime | pd.Timestamp
) -> OptionsBackfillPlan:
    """The requests for `market`'s options over [start, end) (UTC-aware; end exclusive), cost-guarded."""
    start_ns, end_ns = _utc_ns(start, "start"), _utc_ns(end, "end")
    if start_ns >= end_ns:
        raise ValueError(f"backfill start {start} must be before end {end} (end is exclusive)")
    parents = stream_parents([config.market(market)])
    key = load_api_key(config.databento)
    register_secret(key.reveal())
    guard = CostGuard(config.databento.max_historical_cost_usd, config.state_dir)
    source = HistoricalSource(config.databento.dataset, key, guard, config.databento.historical_url)
    warm_from = start_ns - WARMUP_NS
    lookback = tuple(
        (label, source.request(parent, "definition", warm_from - DEFINITION_LOOKBACK_NS, warm_from))
        for parent, label in parents.items()
    )
    windows = (
        *_windows(source, parents, warm_from, start_ns, store=False),
        *_windows(source, parents, start_ns, end_ns, store=True),
    )
    return OptionsBackfillPlan(source, market, parents, lookback, windows)


def _windows(
    source: HistoricalSource, parents: dict[str, str], start_ns: int, end_ns: int, *, store: bool
) -> list[Window]:
    """[start_ns, end_ns) in `WINDOW_NS` windows, each requesting every parent's option schemas."""
    windows = []
    for a in range(start_ns, end_ns, WINDOW_NS):
        b = min(a + WINDOW_NS, end_ns)
        requests = tuple(
            (label, source.request(parent, schema, a, b))
            for parent, label in parents.items()
            for schema in OPTION_SCHEMAS
        )
        windows.append(Window(a, b, requests, store))
    return windows


def quote_options_backfill(plan: OptionsBackfillPlan, client: databento.Historical) -> list[Quote]:
    """What every request of `plan` costs (free metadata calls; nothing is downloaded)."""
    return [plan.source.guard.quote(client, request) for request in plan.all_requests]


def backfill_options(
    config: Config,
    store: Store,
    market: str,
    start: datetime | pd.Timestamp,
    end: datetime | pd.Timestamp,
    progress: Progress | None = None,
) -> int:
    """Backfill `market`'s options for [start, end): option records, chain snapshots and their features, through
    the live `OptionsSink`; returns the option records stored (after de-duplication). `CostRefused` before any
    download if the plan would break the cost guard's limits."""
    plan = plan_options_backfill(config, market, start, end)
    source = plan.source
    client = source.client()
    source.guard.check_total(quote_options_backfill(plan, client))
    one_market = replace(config, markets=(config.market(market),))
    writer = configured_writer(store, config.storage)
    sink = OptionsSink(one_market, store, writer, PipelineStats())
    symbols = SymbolMap(plan.parents)
    seed_symbols(store, [market], symbols, OPTIONS)
    for label, request in plan.lookback:  # instruments listed before the warm-up, which may be a weekend's silence
        sink.book.ingest(source.decode(client, request, symbols, label).frames, snapshots=False)
    quiet_ns = round(config.options.snapshot_interval_s * NS_PER_S)
    total = len(plan.all_requests)
    done, records, stored = len(plan.lookback), 0, 0
    in_range_ns: int | None = None  # the newest record applied in the range (a session before `start` is not ended)
    for window in plan.windows:
        frames: list[MarketFrame] = []
        for label, request in window.requests:
            batch = source.decode(client, request, symbols, label)
            frames.extend(batch.frames)
            done += 1
            records += sum(len(item.frame) for item in batch.frames)
            if progress is not None:
                progress(done, total, records)
        if not window.store:
            sink.book.ingest(frames, snapshots=False)
            continue
        for piece, quiet_after in sessions(frames, in_range_ns, quiet_ns):
            stored += sink.commit(piece)
            if quiet_after:
                sink.end_session()
        in_range_ns = sink.book.last_event_ns
    if _ends_quiet(plan, in_range_ns, quiet_ns):
        sink.end_session()
    writer.flush_all()
    store.snapshot("options-backfill", (OPTIONS, FEATURES))
    log.info("options_backfill_done", market=market, start=str(start), end=str(end), records=records, stored=stored)
    return stored


def _ends_quiet(plan: OptionsBackfillPlan, last_ns: int | None, quiet_ns: int) -> bool:
    """Whether the range's newest record (`last_ns`; one of the warm-up does not count) is followed by a quiet
    stretch to the range's end: its session ended there, as one backfill over a longer range (or live capture)
    would end it, and a backfill of the next range does not end a session begun before its start."""
    stored = [window for window in plan.windows if window.store]
    if last_ns is None or not stored or last_ns < stored[0].start_ns:
        return False
    return stored[-1].end_ns - last_ns >= quiet_ns


def sessions(frames: Sequence[MarketFrame], last_ns: int | None, quiet_ns: int) -> list[tuple[list[MarketFrame], bool]]:
    """`frames` cut where the records go quiet for at least `quiet_ns` (a session break): the pieces in time order,
    each with whether a quiet stretch follows it. A quiet stretch between `last_ns` (the newest record already
    applied) and the first record makes the first piece empty and quiet after: the previous session ends first.
    Live capture ends a session (a snapshot at the last record's time) when the stream is quiet that long."""
    times = np.sort(np.concatenate([pd.DatetimeIndex(f.frame.index).asi8 for f in frames if not f.frame.empty] or [[]]))
    if not len(times):
        return [(list(frames), False)]
    starts = [int(t) for t in times[1:][np.diff(times) >= quiet_ns]]
    pieces: list[tuple[list[MarketFrame], bool]] = []
    if last_ns is not None and int(times[0]) - last_ns >= quiet_ns:
        pieces.append(([], True))
    bounds = [None, *starts, None]
    for a, b in itertools.pairwise(bounds):
        part = [_between(item, a, b) for item in frames]
        pieces.append((part, b is not None))
    return pieces


def _between(item: MarketFrame, start_ns: int | None, end_ns: int | None) -> MarketFrame:
    times = pd.DatetimeIndex(item.frame.index).asi8
    keep = np.ones(len(times), dtype=bool)
    if start_ns is not None:
        keep &= times >= start_ns
    if end_ns is not None:
        keep &= times < end_ns
    return MarketFrame(item.market, item.schema, item.frame[keep])
