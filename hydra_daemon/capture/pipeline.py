"""The live-capture pipeline both market-data domains share: one Databento Live session for every configured market
(`LiveStream`), committed into one library through one `StreamWriter`.

The base owns the stream, the writer and the `IngestPipeline` plumbing: seeding the stream's symbol map from stored
definitions before the first connect, committing each clean batch in a worker thread, keeping `last_record_time`
and per market what it delivered (`PipelineStats.markets`; market data only, not `REFERENCE_SCHEMAS`: one vectorised
pass per frame, the decoder already groups a batch by market), flushing on idle ticks and committing everything
buffered when `fetch()` ends (shielded from cancellation).
Futures and options supply only their domain: what the session subscribes, where each schema resumes, and how a
clean batch is stored (`resume_starts`, `commit`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncGenerator
from contextlib import aclosing

import anyio
import pandas as pd

from hydra_daemon.backoff import Backoff
from hydra_daemon.capture.commit import configured_writer, seed_symbols
from hydra_daemon.clock import Clock
from hydra_daemon.config import Config
from hydra_daemon.databento.decode import DecodedBatch, MarketFrame
from hydra_daemon.databento.live_stream import LiveSettings, LiveStream, StreamSpec
from hydra_daemon.ingest import Idle, IngestPipeline
from hydra_daemon.secrets import ApiKey
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.symbols import data_symbol
from hydra_daemon.store.writer import Watermark

REFERENCE_SCHEMAS = frozenset({"definition", "statistics"})
"""Reference data: sent when a session starts, an instrument is listed or a settlement is published, not while the
market trades, so never evidence that its data flows (a market whose quotes stopped looked fresh at each one)."""


class LiveCapturePipeline(IngestPipeline[DecodedBatch]):
    """Live records of `spec` for every configured market → `library`, exactly once."""

    library: str

    def __init__(
        self,
        config: Config,
        store: Store,
        key: ApiKey,
        spec: StreamSpec,
        *,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(markets=tuple(m.name for m in config.markets), schema=",".join(spec.schemas))
        self.store = store
        self.writer = configured_writer(store, config.storage)
        self.stats.append_seconds = self.writer.append_seconds
        self.stream = LiveStream(
            LiveSettings.from_config(config.databento, key, config.state_dir),
            spec,
            self.resume_starts,
            self.stats,
            clock=clock,
            backoff=backoff,
        )

    @abstractmethod
    def resume_starts(self, schema: str) -> dict[str, int]:
        """Per market, where the next session resumes `schema`, in UTC ns (a market absent: nothing of it stored;
        empty: the whole replay window). Worker thread."""

    @abstractmethod
    def commit(self, batch: DecodedBatch) -> int:
        """Store a clean batch; return the rows stored (after de-duplication). Worker thread."""

    def warm_start(self) -> None:
        """Before the first connect (worker thread): teach the stream the raw symbols of stored instruments, so
        Historical fills (which carry no symbol mappings) find their markets."""
        seed_symbols(self.store, self.markets, self.stream.symbols, self.library)

    def end_capture(self) -> None:
        """When `fetch()` ends, however it ends (worker thread): commit everything buffered."""
        self.writer.flush_all()

    def counts_for_lag(self, item: MarketFrame) -> bool:
        """Whether `item`'s rows are this pipeline's own market data (their newest time is `stats.last_record_time`
        and its market's delivery): not `REFERENCE_SCHEMAS`."""
        return item.schema not in REFERENCE_SCHEMAS

    def watermark(self, market: str, schema: str) -> Watermark | None:
        """Committed watermark of ``<library>/<market>.<schema>`` (None before the first commit)."""
        return self.writer.watermark(self.library, data_symbol(market, schema))

    async def fetch(self) -> AsyncGenerator[DecodedBatch | Idle, None]:
        await anyio.to_thread.run_sync(self.warm_start)
        try:
            async with aclosing(self.stream.batches()) as batches:
                async for batch in batches:
                    yield batch
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.end_capture)

    async def persist(self, clean: DecodedBatch) -> int:
        stored = await anyio.to_thread.run_sync(self.commit, clean)
        self.stats.buffered_rows = self.writer.pending_rows()
        own = [item for item in clean.frames if not item.frame.empty and self.counts_for_lag(item)]
        for item in own:
            self.stats.market(item.market).advance(pd.DatetimeIndex(item.frame.index), item.schema)
        newest = max((item.frame.index.max() for item in own), default=None)
        if stored and newest is not None:
            self.stats.last_record_time = newest  # a pd.Timestamp: a datetime keeping its ns
        return stored

    async def on_idle(self) -> None:
        """Rows buffered by the last batch are committed once due, not held until the next batch."""
        await anyio.to_thread.run_sync(self.writer.flush_due)
        self.stats.buffered_rows = self.writer.pending_rows()
