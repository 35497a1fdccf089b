"""Futures capture: Live OHLCV bars (ohlcv-1d, plus ohlcv-1m when configured) and definitions of every market's
``{ROOT}.FUT``, validated, stored exactly once in the ``futures`` library, the daily close also as the
``settlement`` feature.

Settlement feature rows (one per instrument symbol and trading date):

- ``as_of`` = the trading date (UTC midnight of the bar, i.e. the bar's ``ts_event``);
- ``available_at`` = the bar's end (``ts_event`` + 1 day): Databento publishes a daily bar when its interval
  closes, so that is when the world could know it. The same instant is used whether the bar arrives live, from a
  replay after a reconnect, or from a Historical backfill years later — when *we* received it is not when it was
  public, and using it would make backfilled history useless for point-in-time research and would turn every
  replay into a spurious revision. A bar with a different close for a stored day (a corrected bar from a replay,
  gap fill or backfill) is a revision, available from when we received it: when it was published is unknown, and
  the bar end would claim the world knew the new close all along.
- ``value`` = the bar's close (a proxy for the CME settlement price, which Databento carries in `statistics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pandas as pd
import structlog

from hydra_daemon.backoff import Backoff
from hydra_daemon.capture.commit import MarketRecords
from hydra_daemon.capture.pipeline import LiveCapturePipeline
from hydra_daemon.clock import Clock
from hydra_daemon.config import Config
from hydra_daemon.databento.decode import DecodedBatch, MarketFrame
from hydra_daemon.databento.live_stream import StreamSpec
from hydra_daemon.futures.validation import validate_bars
from hydra_daemon.ingest import Problem
from hydra_daemon.secrets import ApiKey
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.symbols import FEATURES, FUTURES
from hydra_daemon.store.writer import StreamWriter

log = structlog.get_logger()

SETTLEMENT = "settlement"
_DAY = pd.Timedelta(days=1)


def futures_schemas(config: Config) -> tuple[str, ...]:
    """The Live schemas of the futures session: the configured bar schemas plus ``definition``."""
    return (*config.databento.futures_schemas, "definition")


def is_bar_schema(schema: str) -> bool:
    return schema.startswith("ohlcv-")


def validate_frames(frames: Sequence[MarketFrame]) -> tuple[tuple[MarketFrame, ...], list[Problem]]:
    """Bars checked by `validate_bars` (bad ones become Problems); other schemas pass through."""
    clean: list[MarketFrame] = []
    problems: list[Problem] = []
    for item in frames:
        if not is_bar_schema(item.schema):
            clean.append(item)
            continue
        good, bad = validate_bars(item.frame, item.schema)
        problems.extend(Problem(p.what, f"{item.market} {p.where}") for p in bad)
        clean.append(MarketFrame(item.market, item.schema, good))
    return tuple(clean), problems


def settlement_rows(bars: pd.DataFrame) -> pd.DataFrame:
    """Feature rows (as_of, available_at, value, symbol) from validated ohlcv-1d bars (see module docstring)."""
    as_of = bars.index.tz_convert("UTC").floor("D")
    return pd.DataFrame(
        {
            "as_of": as_of,
            "available_at": bars.index.tz_convert("UTC") + _DAY,
            "value": bars["close"].to_numpy(dtype="float64"),
            "symbol": bars["symbol"].to_numpy(dtype=object),
        }
    ).reset_index(drop=True)


SNAPSHOT_LABEL = "futures"


class FuturesSink:
    """Where validated futures frames go (sync; call from a worker thread): bars and definitions into the
    ``futures`` library (`MarketRecords`), daily closes as settlement features. Daily bars close a trading day's
    ingestion cycle: they are flushed at once and the store is snapshotted, so "what did the store hold then" stays
    answerable."""

    def __init__(self, store: Store, writer: StreamWriter, markets: Sequence[str]) -> None:
        self.store = store
        self.records = MarketRecords(store, writer, FUTURES, markets)
        self.features = FeatureStore(store)

    def commit(self, frames: Sequence[MarketFrame], delivery: int | None = None) -> int:
        stored = self.records.add(frames, delivery)
        daily = [item for item in frames if item.schema == "ohlcv-1d" and not item.frame.empty]
        for item in daily:
            rows = self._keyed_settlements(item)
            if not rows.empty:
                now = pd.Timestamp.now(tz="UTC")
                self.features.write_feature(item.market, SETTLEMENT, rows, ingested_at=now, revised_at=now)
        if daily:
            self.records.flush_all()
            self.store.snapshot(SNAPSHOT_LABEL, (FUTURES, FEATURES))
        else:
            self.records.flush_due()
        return stored

    @staticmethod
    def _keyed_settlements(item: MarketFrame) -> pd.DataFrame:
        """Settlement rows of `item`'s daily bars that have a key: a bar of an instrument whose raw symbol is not
        known yet (a gap fill before its definition was seen) is stored as a bar but gets no settlement row (one
        line names it); of two bars of one symbol and day the later counts. Without this one such batch fails the
        feature write and, replayed after every restart, crashes the pipeline again."""
        rows = settlement_rows(item.frame)
        unknown = (rows["symbol"] == "").to_numpy()
        if unknown.any():
            bars = item.frame[unknown].head(20)
            ids, times = bars["instrument_id"].tolist(), bars.index
            log.warning(
                "settlement_without_symbol",
                market=item.market,
                what="daily bars of instruments whose raw symbol is unknown (no definition seen): no settlement row",
                where=[f"instrument_id={i} at {t.isoformat()}" for i, t in zip(ids, times, strict=True)],
            )
        return rows[~unknown].drop_duplicates(["as_of", "symbol"], keep="last").reset_index(drop=True)


class FuturesIngestPipeline(LiveCapturePipeline):
    """Live futures bars + definitions for all configured markets → ``futures`` library, exactly once."""

    name = "futures"
    library = FUTURES

    def __init__(
        self,
        config: Config,
        store: Store,
        key: ApiKey,
        *,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        parents = {f"{market.futures_root}.FUT": market.name for market in config.markets}
        spec = StreamSpec(futures_schemas(config), parents)
        super().__init__(config, store, key, spec, clock=clock, backoff=backoff)
        self.sink = FuturesSink(store, self.writer, self.markets)

    def resume_starts(self, schema: str) -> dict[str, int]:
        return self.sink.records.resume_starts(schema, self.stream.spec.schemas)

    def validate(self, batch: DecodedBatch) -> tuple[DecodedBatch, list[Problem]]:
        clean, problems = validate_frames(batch.frames)
        return replace(batch, frames=clean), problems

    def commit(self, batch: DecodedBatch) -> int:
        return self.sink.commit(batch.frames, batch.delivery)
