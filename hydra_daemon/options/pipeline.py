"""Options capture: one Live session with ``definition``, ``mbp-1`` and ``statistics`` for every market's
``{options_root}.OPT`` (plus its ``{futures_root}.FUT`` for the underlying price), stored exactly once in the
``options`` library, assembled into chains snapshotted every `OptionsConfig.snapshot_interval_s` of event time and at
session end, with per-expiry features. Session end = the stream carried no record for `snapshot_interval_s` of wall
time (the trading session closed, or the venue went quiet), or the pipeline stops: the chain is then snapshotted at
the last record's time, once.

Stored, per market (library ``options``):
- ``<M>.definition``, ``<M>.statistics`` and, when `DatabentoConfig.persist_quotes`, ``<M>.mbp-1``: the option
  records verbatim (capture is exactly-once whatever the chain rules think of a quote); the underlying futures
  records of this session only feed the chains (the futures pipeline owns the ``futures`` library);
- ``<M>.chain``: one row per option per snapshot, indexed by ``snapshot_time`` (columns: `chain.CHAIN_COLUMNS`),
  written through the `StreamWriter` keyed on ``instrument_id``, so a snapshot is stored once across restarts;
- features ``put_call_oi_ratio``, ``total_oi``, ``atm_iv``, ``liquid_strike_count`` keyed by ``expiration``
  (``as_of`` = ``available_at`` = snapshot time), written after the snapshot's chain is committed and only for
  snapshots newer than the newest stored one, so a restart never recomputes (revises) them from a partial chain.

After a restart the chains are first rebuilt from the stored option records (`OptionsSink.restore`), so a
snapshot after a restart is not limited to what the Live replay (from the watermarks) brings back.

Problems found in snapshots (rejected options, flagged quotes) are logged as ``option_chain_problem`` the first time
per (market, instrument, rule) and counted in ``stats.rejects``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from datetime import date

import anyio
import numpy as np
import pandas as pd
import structlog
from arcticdb.version_store.library import Library

from hydra_daemon.backoff import Backoff
from hydra_daemon.capture.commit import MarketRecords
from hydra_daemon.capture.pipeline import LiveCapturePipeline
from hydra_daemon.clock import Clock
from hydra_daemon.config import Config
from hydra_daemon.databento.decode import BatchSource, DecodedBatch, MarketFrame
from hydra_daemon.databento.live_stream import StreamSpec
from hydra_daemon.ingest import PipelineStats, Problem
from hydra_daemon.options.book import ChainBook, MarketSnapshot, is_underlying, stream_parents
from hydra_daemon.options.chain import EVENT_COLUMNS
from hydra_daemon.options.features import chain_features
from hydra_daemon.secrets import ApiKey
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.partitions import read_stream
from hydra_daemon.store.symbols import FEATURES, OPTIONS, chain_symbol, data_symbol
from hydra_daemon.store.writer import StreamWriter, Watermark

log = structlog.get_logger()

OPTION_SCHEMAS = ("definition", "mbp-1", "statistics")
CHAIN_KEY = ("instrument_id",)
NS_PER_S = 1_000_000_000
SNAPSHOT_LABEL = "options"
RESTORE_REFERENCE_S = 7 * 86_400
"""How far back a warm start reads definitions and statistics (venues resend them daily; 7 days spans holidays)."""
RESTORE_QUOTES_S = 3600
"""A warm start reads stored quotes this much at a time (memory bounded by an hour of quotes, not a day)."""
QUOTE_COLUMNS = list(EVENT_COLUMNS["mbp-1"])


class OptionsSink:
    """Where option batches go (sync: call from a worker thread): option records into the ``options`` library
    (`MarketRecords`), every record into the chains, chain snapshots and their features into the store."""

    def __init__(self, config: Config, store: Store, writer: StreamWriter, stats: PipelineStats) -> None:
        self.config = config
        self.store = store
        self.markets = tuple(m.name for m in config.markets)
        self.writer = writer
        self.records = MarketRecords(store, writer, OPTIONS, self.markets)
        self.features = FeatureStore(store)
        self.book = ChainBook(config.markets, round(config.options.snapshot_interval_s * NS_PER_S))
        self.stats = stats
        self._chain_marks: dict[str, int] | None = None
        self.chain_rows = 0
        """Chain rows stored so far (with quotes not persisted, what the quotes deliver: the pipeline counts them)."""
        self._logged: set[tuple[str, str, str]] = set()
        """(market, instrument, rule) logged on `_logged_day`: once a day, so the set stays one day's worth."""
        self._logged_day: date | None = None
        self._evicted_reported: dict[str, int] = {}

    def stored_schemas(self) -> tuple[str, ...]:
        """Option schemas persisted raw (mbp-1 only with `persist_quotes`)."""
        return tuple(s for s in OPTION_SCHEMAS if s != "mbp-1" or self.config.databento.persist_quotes)

    def commit(self, frames: Sequence[MarketFrame], *, live: bool = True, delivery: int | None = None) -> int:
        """Store the option records of `frames` (the next batch of `delivery`), advance the chains, store the
        snapshots that came due (only from live data: a Historical gap fill arrives schema by schema, not in time
        order)."""
        stored_schemas = self.stored_schemas()
        raw = [f for f in frames if not is_underlying(f.market) and f.schema in stored_schemas]
        stored = self.records.add(raw, delivery)
        self._store_snapshots(self.book.ingest(frames, snapshots=live))
        self.records.flush_due()
        return stored

    def restore(self, store: Store) -> int:
        """Warm start after a restart: rebuild the chains from stored option records — definitions and statistics
        of the last `RESTORE_REFERENCE_S`, quotes of the last replay window — so options not requoted since the
        restart keep their quote. Returns the number of records applied. Their underlying futures quotes are not
        stored, so restored quotes get an implied vol only once requoted. Quotes are read `RESTORE_QUOTES_S` at a
        time: a day of them is ~10M rows a market, which read at once took about a gigabyte at every restart."""
        if not store.has_library(OPTIONS):
            return 0
        library = store.library(OPTIONS)
        frames = []
        quotes: dict[str, tuple[int, int]] = {}
        for market in self.markets:
            for schema in self.stored_schemas():
                symbol = data_symbol(market, schema)
                mark = self.writer.watermark(OPTIONS, symbol)
                if mark is None:
                    continue
                if schema == "mbp-1":
                    quotes[market] = (mark.ts_ns - self.config.databento.replay_window_s * NS_PER_S, mark.ts_ns)
                    continue
                since = pd.Timestamp(mark.ts_ns - RESTORE_REFERENCE_S * NS_PER_S, tz="UTC")
                frame = read_stream(library, symbol, date_range=(since, None), columns=list(EVENT_COLUMNS[schema]))
                frames.append(MarketFrame(market, schema, frame.data))
        applied = self._restore_in_windows(library, frames, quotes)
        log.info("option_chains_restored", records=applied, markets=list(self.markets))
        return applied

    def _restore_in_windows(
        self, library: Library, frames: list[MarketFrame], quotes: Mapping[str, tuple[int, int]]
    ) -> int:
        """Apply `frames` (definitions, statistics) and each market's stored quotes in [first, last] ns in time
        order, `RESTORE_QUOTES_S` at a time (the records of each window together, as the stream brought them)."""
        if not quotes:
            self._restore_window(frames)
            return sum(len(item.frame) for item in frames)
        step = RESTORE_QUOTES_S * NS_PER_S
        first, last = min(a for a, _ in quotes.values()), max(b for _, b in quotes.values())
        edges = [None, *range(first, last + 1, step), last + 1, None]
        applied = 0
        for a, b in itertools.pairwise(edges):
            window = [_between(item, a, b) for item in frames]
            for market, (since, until) in quotes.items() if a is not None and b is not None else ():
                lo, hi = max(a, since), min(b - 1, until)
                if lo <= hi:
                    span = (pd.Timestamp(lo, tz="UTC"), pd.Timestamp(hi, tz="UTC"))
                    read = read_stream(library, data_symbol(market, "mbp-1"), date_range=span, columns=QUOTE_COLUMNS)
                    window.append(MarketFrame(market, "mbp-1", read.data))
            applied += sum(len(item.frame) for item in window)
            self._restore_window(window)
        return applied

    def _restore_window(self, window: list[MarketFrame]) -> None:
        """Records up to the newest stored snapshot rebuild the chains without snapshots; records after it (committed
        with a snapshot whose own append did not) cross their boundaries again, and those snapshots are stored."""
        marks = self.chain_marks()
        if len(marks) < len(self.markets):
            self.book.ingest(window, snapshots=False)
            return
        cut = min(marks.values()) + 1
        self.book.ingest([_between(item, None, cut) for item in window], snapshots=False)
        self._store_snapshots(self.book.ingest([_between(item, cut, None) for item in window]))

    def end_session(self) -> None:
        """Session end (the stream went quiet, or we stop): snapshot the chains at the last record's time, flush
        everything, and snapshot the store (the end of an ingestion cycle)."""
        self._store_snapshots(self.book.close())
        self.records.flush_all()
        self.store.snapshot(SNAPSHOT_LABEL, (OPTIONS, FEATURES))

    def resume_starts(self, schema: str) -> dict[str, int]:
        """Per market, the replay start of `schema`: its committed watermark, or when the market's capture began if
        nothing of it is stored yet (what it published meanwhile is then filled from Historical); a market with
        nothing stored is absent. Quotes that are not stored resume each market from its newest snapshot, and from
        the whole replay window (empty) while a market has none."""
        stored = self.stored_schemas()
        if schema in stored:
            return self.records.resume_starts(schema, stored)
        marks = self.chain_marks()
        return dict(marks) if len(marks) == len(self.markets) else {}

    def chain_marks(self) -> dict[str, int]:
        """Per market, the time of the newest stored snapshot (markets without one are absent)."""
        if self._chain_marks is None:
            self._chain_marks = {}
            for market in self.markets:
                mark: Watermark | None = self.writer.watermark(OPTIONS, chain_symbol(market))
                if mark is not None:
                    self._chain_marks[market] = mark.ts_ns
        return self._chain_marks

    def _store_snapshots(self, snapshots: Sequence[MarketSnapshot]) -> None:
        """Chains first (committed), then their features: a crash in between loses features, never revises them."""
        marks = self.chain_marks()
        fresh = [item for item in snapshots if item.snapshot.at.value > marks.get(item.market, -1)]
        if not fresh:
            return
        for item in fresh:
            marks[item.market] = item.snapshot.at.value
            self._report(item)
            if not item.snapshot.frame.empty:
                self.chain_rows += self.writer.add(OPTIONS, chain_symbol(item.market), item.snapshot.frame, CHAIN_KEY)
        self.records.flush_all()
        self._write_features(fresh)

    def _write_features(self, snapshots: Sequence[MarketSnapshot]) -> None:
        """One feature-store write per (market, feature) for all `snapshots` (a catch-up brings many at once)."""
        rows: dict[tuple[str, str], list[pd.DataFrame]] = {}
        for item in snapshots:
            for name, values in chain_features(item.snapshot.frame, self.config.options).items():
                if not values.empty:
                    rows.setdefault((item.market, name), []).append(values)
        for (market, name), frames in rows.items():
            self.features.write_feature(market, name, pd.concat(frames, ignore_index=True))

    def _report(self, item: MarketSnapshot) -> None:
        frame = item.snapshot.frame
        log.info(
            "option_chain_snapshot",
            market=item.market,
            at=item.snapshot.at.isoformat(),
            options=len(frame),
            with_iv=int(frame["implied_vol"].notna().sum()),
            problems=len(item.snapshot.problems),
            awaiting_definitions=self.book.chains[item.market].undefined_count,
        )
        day = item.snapshot.at.date()
        if day != self._logged_day:
            self._logged, self._logged_day = set(), day
        for problem in item.snapshot.problems:
            self._log_problem(item.market, problem)
        evicted = self.book.chains[item.market].evicted_undefined
        if evicted > self._evicted_reported.get(item.market, 0):
            self._evicted_reported[item.market] = evicted
            log.warning(
                "option_chain_evicted_undefined",
                market=item.market,
                instruments=evicted,
                hint="quotes kept waiting for definitions that never came; check the definition subscription",
            )

    def _log_problem(self, market: str, problem: Problem) -> None:
        instrument = problem.where.split(" at ", 1)[0]
        rule = problem.what.split(":", 1)[0]
        key = (market, instrument, rule)
        if key in self._logged:
            return
        self._logged.add(key)
        self.stats.rejects += 1
        log.warning("option_chain_problem", market=market, what=problem.what, where=problem.where)


class OptionsIngestPipeline(LiveCapturePipeline):
    """Live options (+ underlying futures) for all configured markets → ``options`` library and features."""

    name = "options"
    library = OPTIONS

    def __init__(
        self,
        config: Config,
        store: Store,
        key: ApiKey,
        *,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        spec = StreamSpec(OPTION_SCHEMAS, stream_parents(config.markets))
        super().__init__(config, store, key, spec, clock=clock, backoff=backoff)
        self.sink = OptionsSink(config, store, self.writer, self.stats)
        self._quiet_s = config.options.snapshot_interval_s
        self._last_data_monotonic = time.monotonic()
        self._session_open = True

    def resume_starts(self, schema: str) -> dict[str, int]:
        return self.sink.resume_starts(schema)

    def watermark(self, market: str, schema: str) -> Watermark | None:
        """Committed watermark of ``options/<market>.<schema>`` (``"chain"`` for the chain snapshots)."""
        if schema == "chain":
            return self.writer.watermark(OPTIONS, chain_symbol(market))
        return super().watermark(market, schema)

    def warm_start(self) -> None:
        super().warm_start()
        self.sink.restore(self.store)

    def end_capture(self) -> None:
        self.sink.end_session()

    def counts_for_lag(self, item: MarketFrame) -> bool:
        """The underlying futures feed the chains; the futures pipeline reports their lag."""
        return super().counts_for_lag(item) and not is_underlying(item.market)

    def validate(self, batch: DecodedBatch) -> tuple[DecodedBatch, list[Problem]]:
        """Records are captured verbatim; chain rules are applied at snapshot time (see `quote_validation`)."""
        return batch, []

    def commit(self, batch: DecodedBatch) -> int:
        """The option records and chain rows `batch` stored: with quotes not persisted, a batch of quotes stores
        only chain rows, and health must count that as data delivered (not as silence)."""
        chain_rows = self.sink.chain_rows
        stored = self.sink.commit(batch.frames, live=batch.source is BatchSource.LIVE, delivery=batch.delivery)
        return stored + self.sink.chain_rows - chain_rows

    async def persist(self, clean: DecodedBatch) -> int:
        self._last_data_monotonic = time.monotonic()
        self._session_open = True
        return await super().persist(clean)

    async def on_idle(self) -> None:
        """Quiet for `snapshot_interval_s` of wall time: the session ended, once until data flows again. Before
        that, rows buffered by the last data batch must not wait for the quiet period."""
        if self._session_open and time.monotonic() - self._last_data_monotonic >= self._quiet_s:
            self._session_open = False
            await anyio.to_thread.run_sync(self.sink.end_session)
        else:
            await super().on_idle()


def _between(item: MarketFrame, start_ns: int | None, end_ns: int | None) -> MarketFrame:
    """The rows of `item` (index-sorted) in [start_ns, end_ns) (None: open)."""
    times = pd.DatetimeIndex(item.frame.index).asi8
    lo = 0 if start_ns is None else int(np.searchsorted(times, start_ns, side="left"))
    hi = len(times) if end_ns is None else int(np.searchsorted(times, end_ns, side="left"))
    return MarketFrame(item.market, item.schema, item.frame.iloc[lo:hi])
