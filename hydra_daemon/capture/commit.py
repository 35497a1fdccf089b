"""Committing decoded market frames exactly once: one `StreamWriter` symbol per (market, schema) in one library.

Sync (ArcticDB I/O): call from a worker thread. The symbol is `data_symbol(market, schema)`, the dedup key the
schema's `SchemaLayout.key_columns`, so rows redelivered by a Live replay or a Historical fill are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hydra_daemon.config import StorageConfig
from hydra_daemon.databento.decode import MarketFrame, SymbolMap, layout
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.partitions import edge_ns
from hydra_daemon.store.symbols import data_symbol
from hydra_daemon.store.writer import Commit, StreamWriter


def configured_writer(store: Store, storage: StorageConfig) -> StreamWriter:
    """A `StreamWriter` batching as `storage` says (compaction is `store.maintenance`'s job)."""
    return StreamWriter(store, flush_rows=storage.flush_rows, flush_interval_s=storage.flush_interval_s)


class MarketRecords:
    """The raw market records of `markets` in `library`: routes each `MarketFrame` to its ``<market>.<schema>``
    symbol through `writer` and answers where a replay of a schema must resume."""

    def __init__(self, store: Store, writer: StreamWriter, library: str, markets: Sequence[str]) -> None:
        self.store = store
        self.writer = writer
        self.library = library
        self.markets = tuple(markets)

    def add(self, frames: Iterable[MarketFrame], delivery: int | None = None) -> int:
        """Buffer the not-yet-committed rows of `frames` (the next batch of `delivery`, see `StreamWriter.add`);
        return how many were accepted."""
        accepted = 0
        for item in frames:
            if item.frame.empty:
                continue
            symbol = data_symbol(item.market, item.schema)
            key_columns = layout(item.schema).key_columns
            accepted += self.writer.add(self.library, symbol, item.frame, key_columns, delivery=delivery)
        return accepted

    def flush_due(self) -> list[Commit]:
        return self.writer.flush_due()

    def flush_all(self) -> list[Commit]:
        return self.writer.flush_all()

    def resume_starts(self, schema: str, schemas: Sequence[str]) -> dict[str, int]:
        """Per market, where a replay of `schema` must start: its committed watermark; for a market with nothing of
        `schema` stored yet, when its capture into `schemas` began (so what it published while we were down is
        filled from Historical). A market with nothing stored at all (just added to the configuration, or a fresh
        store) is absent: new, not behind. Each market has its own start, so one far behind (a market re-added after
        months) is filled from its own watermark, not the others with it (a Historical re-fill of their history
        that the cost guard refuses, recording a gap in every market)."""
        starts = {}
        for market in self.markets:
            mark = self.writer.watermark(self.library, data_symbol(market, schema))
            start = mark.ts_ns if mark is not None else capture_start_ns(self.store, self.library, [market], schemas)
            if start is not None:
                starts[market] = start
        return starts


def capture_start_ns(store: Store, library: str, markets: Sequence[str], schemas: Sequence[str]) -> int | None:
    """When capture into these symbols began: the earliest stored row over (markets × schemas); None if all empty.

    A schema with nothing stored while its siblings have data must resume from here, not from "now": records of it
    published while we were down (even beyond the replay window) are then filled from Historical."""
    if not store.has_library(library):
        return None
    lib = store.library(library)
    firsts: list[int] = []
    for market in markets:
        for schema in schemas:
            first = edge_ns(lib, data_symbol(market, schema), tail=False)
            if first is not None:
                firsts.append(first)
    return min(firsts, default=None)


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
