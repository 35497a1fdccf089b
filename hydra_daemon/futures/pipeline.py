"""Futures capture: Live OHLCV bars (ohlcv-1d, plus ohlcv-1m when configured) and definitions of every market's
``{ROOT}.FUT``, validated, stored exactly once in the ``futures`` library, the daily close also as the
``settlement`` feature.

Settlement feature rows (one per instrument symbol and trading date):

- ``as_of`` = the trading date (UTC midnight of the bar, i.e. the bar's ``ts_event``);
- ``available_at`` = the bar's end (``ts_event`` + 1 day): Databento publishes a daily bar when its interval
  closes, so that is when the world could know it. The same instant is used whether the bar arrives live, from a
  replay after a reconnect, or from a Historical backfill years later — when *we* received it is not when it was
  public, and using it would make backfilled history useless for point-in-time research and would turn every
  replay into a spurious revision.
- ``value`` = the bar's close (a proxy for the CME settlement price, which Databento carries in `statistics`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import replace

import anyio
import pandas as pd
import structlog

from hydra_daemon.backoff import Backoff
from hydra_daemon.capture.commit import StreamCommitter, capture_start_ns, configured_writer
from hydra_daemon.clock import Clock
from hydra_daemon.config import Config, MarketConfig
from hydra_daemon.databento.decode import DecodedBatch, MarketFrame, SymbolMap
from hydra_daemon.databento.live_stream import LiveSettings, LiveStream, StreamSpec
from hydra_daemon.futures.validation import validate_bars
from hydra_daemon.ingest import Idle, IngestPipeline, Problem
from hydra_daemon.secrets import ApiKey
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.symbols import FUTURES, data_symbol
from hydra_daemon.store.writer import StreamWriter, Watermark

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


class FuturesCommitter:
    """Persists validated futures frames (sync; call from a worker thread): bars and definitions through the
    `StreamCommitter`, daily closes as settlement features. Daily bars close a trading day's ingestion cycle: they
    are flushed at once and the store is snapshotted, so "what did the store hold then" stays answerable."""

    def __init__(self, store: Store, writer: StreamWriter, markets: Sequence[str]) -> None:
        self.store = store
        self.streams = StreamCommitter(writer, FUTURES, markets)
        self.features = FeatureStore(store)

    def commit(self, frames: Sequence[MarketFrame]) -> int:
        stored = self.streams.add(frames)
        daily = [item for item in frames if item.schema == "ohlcv-1d" and not item.frame.empty]
        for item in daily:
            self.features.write_feature(item.market, SETTLEMENT, settlement_rows(item.frame))
        if daily:
            self.streams.flush_all()
            self.store.snapshot(SNAPSHOT_LABEL)
        else:
            self.streams.flush_due()
        return stored


def seed_symbols(store: Store, markets: Sequence[str], symbols: SymbolMap, library: str) -> None:
    """Teach `symbols` the raw symbols of instruments already stored as definitions (for Historical fills)."""
    if not store.has_library(library):
        return
    lib = store.library(library)
    for market in markets:
        symbol = data_symbol(market, "definition")
        if lib.has_symbol(symbol):
            stored = lib.read(symbol, columns=["instrument_id", "symbol"]).data
            symbols.learn(stored["instrument_id"].tolist(), stored["symbol"].tolist(), market)


class FuturesIngestPipeline(IngestPipeline[DecodedBatch]):
    """Live futures bars + definitions for all configured markets → ``futures`` library, exactly once."""

    name = "futures"

    def __init__(
        self,
        config: Config,
        store: Store,
        key: ApiKey,
        *,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        markets: Sequence[MarketConfig] = config.markets
        schemas = futures_schemas(config)
        super().__init__(markets=tuple(m.name for m in markets), schema=",".join(schemas))
        self._schemas = schemas
        self._store = store
        self._writer = configured_writer(store, config.storage)
        self._committer = FuturesCommitter(store, self._writer, self.markets)
        self._stream = LiveStream(
            LiveSettings.from_config(config.databento, key, config.state_dir),
            StreamSpec.for_markets(markets, "FUT", schemas),
            self._resume_ns,
            self.stats,
            clock=clock,
            backoff=backoff,
        )

    def _resume_ns(self, schema: str) -> int | None:
        """Committed watermark of `schema`; for a schema with nothing stored yet, when capture began (so what it
        published while we were down is filled from Historical); None on a fresh store."""
        committed = self._committer.streams.resume_ns(schema)
        if committed is not None:
            return committed
        return capture_start_ns(self._store, FUTURES, self.markets, self._schemas)

    def watermark(self, market: str, schema: str) -> Watermark | None:
        """Committed watermark of ``futures/<market>.<schema>`` (None before the first commit)."""
        return self._writer.watermark(FUTURES, data_symbol(market, schema))

    async def fetch(self) -> AsyncGenerator[DecodedBatch | Idle, None]:
        await anyio.to_thread.run_sync(seed_symbols, self._store, self.markets, self._stream.symbols, FUTURES)
        try:
            async with aclosing(self._stream.batches()) as batches:
                async for batch in batches:
                    yield batch
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._writer.flush_all)

    def validate(self, batch: DecodedBatch) -> tuple[DecodedBatch, list[Problem]]:
        clean, problems = validate_frames(batch.frames)
        return replace(batch, frames=clean), problems

    async def persist(self, clean: DecodedBatch) -> int:
        stored = await anyio.to_thread.run_sync(self._committer.commit, clean.frames)
        newest = max((item.frame.index.max() for item in clean.frames if not item.frame.empty), default=None)
        if stored and newest is not None:
            self.stats.last_record_time = newest.to_pydatetime()
        return stored

    async def on_idle(self) -> None:
        await anyio.to_thread.run_sync(self._writer.flush_due)
