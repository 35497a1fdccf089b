"""Futures backfill from Databento Historical into the same ``futures`` symbols the live pipeline writes.

Rows go through the same `StreamWriter` watermarks, so a backfill never duplicates what is stored: rows at or
before a symbol's watermark are skipped (ArcticDB symbols are append-only, so history OLDER than what a symbol
already holds cannot be inserted this way — backfill before starting live capture, or into a fresh store).
Settlement features are recorded with the same `available_at` rule as live bars (see `futures`).
Sync (blocking HTTP and ArcticDB): the CLI calls it directly; async callers use a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import databento
import pandas as pd
import structlog

from hydra_daemon.capture.commit import configured_writer, seed_symbols
from hydra_daemon.config import Config
from hydra_daemon.databento.cost_guard import CostGuard, HistoricalRequest, Quote
from hydra_daemon.databento.decode import SymbolMap
from hydra_daemon.databento.historical_fill import NS_PER_DAY, HistoricalSource, chunks
from hydra_daemon.futures.pipeline import FuturesSink, validate_frames
from hydra_daemon.redaction import register_secret
from hydra_daemon.secrets import load_api_key
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.symbols import FUTURES

log = structlog.get_logger()

Progress = Callable[[int, int], None]
"""progress(done_requests, total_requests), called after each Historical request."""

DEFINITION_LOOKBACK_NS = 4 * NS_PER_DAY
"""Definitions are published once per trading day: look back this far (without storing) to learn raw symbols of
instruments whose definition precedes `start`."""


def _utc_ns(value: datetime | pd.Timestamp, name: str) -> int:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise ValueError(f"backfill {name} must be timezone-aware (UTC), got {value!r}")
    return int(stamp.tz_convert("UTC").value)


@dataclass(frozen=True)
class BackfillPlan:
    """The Historical requests a futures backfill makes, in order: the definitions look-back (learned, not stored),
    then definitions and each configured bar schema over [start, end) in request-sized chunks."""

    source: HistoricalSource
    market: str
    lookback: HistoricalRequest
    requests: tuple[HistoricalRequest, ...]

    @property
    def all_requests(self) -> tuple[HistoricalRequest, ...]:
        return (self.lookback, *self.requests)


def plan_backfill(
    config: Config, market: str, start: datetime | pd.Timestamp, end: datetime | pd.Timestamp
) -> BackfillPlan:
    """The requests for `market` over [start, end) (UTC-aware; end exclusive), with a cost-guarded source."""
    start_ns, end_ns = _utc_ns(start, "start"), _utc_ns(end, "end")
    if start_ns >= end_ns:
        raise ValueError(f"backfill start {start} must be before end {end} (end is exclusive)")
    parent = f"{config.market(market).futures_root}.FUT"
    key = load_api_key(config.databento)
    register_secret(key.reveal())
    guard = CostGuard(config.databento.max_historical_cost_usd, config.state_dir)
    source = HistoricalSource(config.databento.dataset, key, guard, config.databento.historical_url)
    schemas = ("definition", *config.databento.futures_schemas)
    requests = tuple(
        source.request(parent, schema, a, b) for schema in schemas for a, b in chunks(schema, start_ns, end_ns)
    )
    lookback = source.request(parent, "definition", start_ns - DEFINITION_LOOKBACK_NS, start_ns)
    return BackfillPlan(source, market, lookback, requests)


def quote_backfill(plan: BackfillPlan, client: databento.Historical) -> list[Quote]:
    """What every request of `plan` costs (free metadata calls; nothing is downloaded)."""
    return [plan.source.guard.quote(client, request) for request in plan.all_requests]


def backfill_futures(
    config: Config,
    store: Store,
    market: str,
    start: datetime | pd.Timestamp,
    end: datetime | pd.Timestamp,
    progress: Progress | None = None,
) -> int:
    """Fetch `market`'s futures definitions and configured bar schemas for [start, end) from Historical, validate
    the bars, store them in the ``futures`` library; return the number of rows stored (after de-duplication).

    The whole plan is priced first: `CostRefused` before anything is fetched when it would break the per-request
    or the daily limit (then each request is priced and accounted again as it is made)."""
    plan = plan_backfill(config, market, start, end)
    source = plan.source
    client = source.client()
    source.guard.check_total(quote_backfill(plan, client))
    parent = plan.lookback.symbols
    writer = configured_writer(store, config.storage)
    sink = FuturesSink(store, writer, [market])
    symbols = SymbolMap({parent: market})
    seed_symbols(store, [market], symbols, FUTURES)
    source.decode(client, plan.lookback, symbols, market)
    stored = 0
    for done, request in enumerate(plan.requests, start=1):
        decoded = source.decode(client, request, symbols, market)
        clean, problems = validate_frames(decoded.frames)
        for problem in problems:
            log.warning("record_rejected", pipeline="futures-backfill", what=problem.what, where=problem.where)
        stored += sink.commit(clean)
        if progress is not None:
            progress(done, len(plan.requests))
    writer.flush_all()
    cost = round(source.guard.stats.historical_cost_usd, 6)
    log.info("futures_backfill_done", market=market, start=str(start), end=str(end), rows=stored, cost_usd=cost)
    return stored
