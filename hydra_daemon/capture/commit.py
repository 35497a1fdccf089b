"""Committing decoded market frames exactly once: one `StreamWriter` symbol per (market, schema) in one library.

Sync (ArcticDB I/O): call from a worker thread. The symbol is `data_symbol(market, schema)`, the dedup key the
schema's `SchemaLayout.key_columns`, so rows redelivered by a Live replay or a Historical fill are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from hydra_daemon.config import StorageConfig
from hydra_daemon.databento.decode import MarketFrame, layout
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.symbols import data_symbol
from hydra_daemon.store.writer import Commit, StreamWriter


def configured_writer(store: Store, storage: StorageConfig) -> StreamWriter:
    """A `StreamWriter` batching as `storage` says (compaction is `store.maintenance`'s job)."""
    return StreamWriter(store, flush_rows=storage.flush_rows, flush_interval_s=storage.flush_interval_s)


class StreamCommitter:
    """Routes `MarketFrame`s of `markets` into `library` through `writer`; answers resume points per schema."""

    def __init__(self, writer: StreamWriter, library: str, markets: Sequence[str]) -> None:
        self.writer = writer
        self.library = library
        self.markets = tuple(markets)

    def add(self, frames: Iterable[MarketFrame]) -> int:
        """Buffer the not-yet-committed rows of `frames`; return how many were accepted."""
        accepted = 0
        for item in frames:
            if item.frame.empty:
                continue
            symbol = data_symbol(item.market, item.schema)
            accepted += self.writer.add(self.library, symbol, item.frame, layout(item.schema).key_columns)
        return accepted

    def flush_due(self) -> list[Commit]:
        return self.writer.flush_due()

    def flush_all(self) -> list[Commit]:
        return self.writer.flush_all()

    def resume_ns(self, schema: str) -> int | None:
        """Where a replay of `schema` must start: the oldest committed watermark over all markets (None if any
        market has nothing committed for it, so the whole replay window is requested)."""
        marks = [self.writer.watermark(self.library, data_symbol(market, schema)) for market in self.markets]
        if not marks or any(mark is None for mark in marks):
            return None
        return min(mark.ts_ns for mark in marks if mark is not None)


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
            symbol = data_symbol(market, schema)
            if lib.has_symbol(symbol):
                head = restore_utc(lib.head(symbol, 1).data)
                if not head.empty:
                    firsts.append(int(pd.Timestamp(head.index[0]).value))
    return min(firsts, default=None)
