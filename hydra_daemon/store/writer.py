"""Micro-batching, exactly-once writer for ordered streams (market data).

Each flush of a symbol is ONE ArcticDB append whose version metadata carries the symbol's new watermark, so the
data and the watermark commit atomically: after a crash the store holds whole flushes and the watermark that
matches them, and redelivered rows (upstream replays from the watermark) are dropped on arrival.

A partitioned stream (``HE.mbp-1``, stored per UTC day: `store.partitions`) is buffered and watermarked as one
symbol; a flush spanning midnight becomes one append per day, oldest first, each carrying the watermark after its
own rows. The stream's watermark is the newest partition's, so a crash between two of those appends leaves the
store holding the older day and the watermark that matches it: the replay from there re-delivers the rest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import structlog

from hydra_daemon.latency import LatencyHistogram
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.frames import normalise_dtypes, require_utc_columns, require_utc_index, restore_utc
from hydra_daemon.store.partitions import day_parts, stream_symbols
from hydra_daemon.store.uri import redact_uri
from hydra_daemon.store.watermark import (
    Delivery,
    Watermark,
    advanced,
    after_watermark,
    boundary_at,
    committed_since,
)

__all__ = ["Commit", "FlushError", "StreamWriter", "Watermark"]

log = structlog.get_logger()


@dataclass(frozen=True)
class Commit:
    """One flush: ``rows`` rows committed to ``library``/``symbol`` (a stream: its day partitions for a partitioned
    one) together with ``watermark``."""

    library: str
    symbol: str
    rows: int
    watermark: Watermark


class FlushError(RuntimeError):
    """Some symbols failed to flush; their rows stay buffered. ``commits`` lists the flushes that succeeded.

    A lost writer lease is not a FlushError: ``LeaseLostError`` propagates and the daemon must stop writing; nor is
    a store whose writes stopped after a failed LMDB commit (``StorageFaultError``: this process writes no more).
    The first failing symbol ends the flush: the others would only wait out the same store retries."""

    def __init__(self, failures: dict[tuple[str, str], Exception], commits: list[Commit]) -> None:
        names = ", ".join(f"{lib}/{sym}: {err}" for (lib, sym), err in failures.items())
        super().__init__(f"flush failed for {names}; rows kept buffered for the next flush")
        self.failures = failures
        self.commits = commits


@dataclass
class _Pending:
    key_columns: tuple[str, ...]
    committed: Watermark | None
    high: Watermark | None
    frames: list[pd.DataFrame] = field(default_factory=list)
    rows: int = 0
    since: float | None = None
    failed: bool = False
    delivery: Delivery | None = None


class StreamWriter:
    """Sync (call from a worker thread). Buffers per (library, symbol); flushes on rows or interval.

    Each flush = ONE arcticdb append whose version metadata carries the new watermark, so data and watermark commit
    atomically. Rows at or before the committed/pending watermark are dropped (multiset on key_columns at
    ts == watermark), making redelivery a no-op. Never compacts or prunes: that is `store.maintenance`'s job, off
    the hot path (each append holds the symbol's `Store.symbol_lock`, so they never interleave). Call
    :meth:`flush_due` after :meth:`add` and on a timer; ``clock`` (monotonic seconds) is what ages the buffers.
    """

    def __init__(
        self,
        store: Store,
        *,
        flush_rows: int = 10_000,
        flush_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        store.require_writable()
        self._store = store
        self._flush_rows = flush_rows
        self._flush_interval_s = flush_interval_s
        self._clock = clock
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._loaded: dict[tuple[str, str], Watermark | None] = {}
        self._lock = threading.RLock()
        self.append_seconds = LatencyHistogram()
        """Duration of every ArcticDB append (one per flushed symbol), for the metrics endpoint."""

    def add(
        self,
        library: str,
        symbol: str,
        frame: pd.DataFrame,
        key_columns: Sequence[str],
        *,
        delivery: object | None = None,
    ) -> int:
        """Buffer the rows of ``frame`` not yet committed or buffered; return how many were accepted.

        ``delivery`` names the ordered stream ``frame`` is the next batch of (one live session, one gap fill): its
        rows at the watermark's time continue that timestamp instead of being matched against it as a redelivery
        (`watermark.after_watermark` with a `Delivery`). None: ``frame`` is a redelivery of whole timestamps or has
        unique keys."""
        what = f"{library}/{symbol}"
        missing = [c for c in key_columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{what}: key columns {missing} are not in the frame (columns: {list(frame.columns)})")
        rows = normalise_dtypes(frame).sort_index(kind="stable")
        require_utc_index(rows, what=what)
        require_utc_columns(rows, what=what)
        rows.index = rows.index.tz_convert("UTC")
        with self._lock:
            pending = self._pending_for(library, symbol, tuple(key_columns))
            if delivery is not None and (pending.delivery is None or pending.delivery.token != delivery):
                pending.delivery = Delivery.resuming(delivery, pending.high)
            matching = pending.delivery if delivery is not None else None
            accepted, pending.high = after_watermark(rows, pending.high, pending.key_columns, matching)
            if not accepted.empty:
                pending.frames.append(accepted)
                pending.rows += len(accepted)
                pending.since = pending.since if pending.since is not None else self._clock()
            if len(accepted) < len(rows):
                log.debug("writer.redelivered_rows_dropped", symbol=what, dropped=len(rows) - len(accepted))
            return len(accepted)

    def flush_due(self) -> list[Commit]:
        """Flush symbols holding ``flush_rows`` rows or rows older than ``flush_interval_s``."""
        now = self._clock()
        with self._lock:
            due = [
                key
                for key, p in self._pending.items()
                if p.rows >= self._flush_rows or (p.since is not None and now - p.since >= self._flush_interval_s)
            ]
            return self._flush(due)

    def flush_all(self) -> list[Commit]:
        """Flush every symbol holding rows."""
        with self._lock:
            return self._flush([key for key, p in self._pending.items() if p.rows])

    def watermark(self, library: str, symbol: str) -> Watermark | None:
        """The committed watermark of a symbol (None if nothing committed); read from the store once, then cached."""
        with self._lock:
            pending = self._pending.get((library, symbol))
            if pending is not None:
                return pending.committed
            if (library, symbol) not in self._loaded:
                self._loaded[(library, symbol)] = self._load_watermark(library, symbol, None)
            return self._loaded[(library, symbol)]

    def pending_rows(self) -> int:
        """Rows buffered and not yet committed, over all symbols."""
        with self._lock:
            return sum(p.rows for p in self._pending.values())

    def _pending_for(self, library: str, symbol: str, key_columns: tuple[str, ...]) -> _Pending:
        pending = self._pending.get((library, symbol))
        if pending is None:
            self._loaded.pop((library, symbol), None)
            committed = self._load_watermark(library, symbol, key_columns)
            pending = self._pending[(library, symbol)] = _Pending(key_columns, committed, committed)
        elif pending.key_columns != key_columns:
            raise ValueError(
                f"{library}/{symbol}: key columns {list(key_columns)} differ from {list(pending.key_columns)} "
                "used earlier for this symbol"
            )
        return pending

    def _load_watermark(self, library: str, stream: str, key_columns: Sequence[str] | None) -> Watermark | None:
        """Watermark from the latest version's metadata of the stream's newest part; derived from the stored tail if
        the metadata lacks one."""
        if not self._store.has_library(library):
            return None
        lib = self._store.library(library)
        parts = stream_symbols(lib, stream)
        if not parts:
            return None
        symbol = parts[-1]
        found = Watermark.from_metadata(lib.read_metadata(symbol).metadata)
        if found is not None:
            return found
        tail = lib.tail(symbol, 1).data
        if tail.empty:
            return None
        last = pd.Timestamp(tail.index[-1])
        rows = restore_utc(lib.read(symbol, date_range=(last, last)).data)
        ts_ns = int(restore_utc(tail).index[-1].value)
        keys = list(key_columns) if key_columns is not None else list(rows.columns)
        if not set(keys) <= set(rows.columns):
            raise ValueError(
                f"{library}/{symbol}: stored rows lack key columns {sorted(set(keys) - set(rows.columns))} "
                "and carry no watermark; cannot tell redelivered rows from new ones"
            )
        log.warning("writer.watermark_derived_from_data", library=library, symbol=symbol)
        return Watermark(ts_ns, boundary_at(rows, ts_ns, keys))

    def _flush(self, keys: list[tuple[str, str]]) -> list[Commit]:
        commits: list[Commit] = []
        failures: dict[tuple[str, str], Exception] = {}
        for key in keys:
            self._store.require_writable()  # lease lost / read-only: stop writing altogether, not per symbol
            try:
                commits.append(self._flush_one(*key))
            except Exception as error:
                if not self._store.status.write_failed(error, f"{key[0]}/{key[1]}"):
                    log.error(
                        "writer.flush_failed",
                        library=key[0],
                        symbol=key[1],
                        store=redact_uri(self._store.uri),
                        error=str(error)[:500],
                        action="rows stay buffered and are retried (the pipeline restarts from its committed "
                        "watermark; nothing is lost or stored twice); if it persists, check the store's endpoint, "
                        "bucket and credentials",
                    )
                self._pending[key].failed = True
                failures[key] = error
                break  # the store is failing: the other symbols would only wait out the same retries
        if failures:
            raise FlushError(failures, commits)
        return commits

    def _flush_one(self, library: str, symbol: str) -> Commit:
        """One append per part (per UTC day of a partitioned stream), oldest first, each with the watermark after its
        rows; rows of a part leave the buffer as soon as it committed, so a failure of a later part retries only
        that one."""
        pending = self._pending[(library, symbol)]
        frame = pd.concat(pending.frames) if len(pending.frames) > 1 else pending.frames[0]
        if pending.failed:
            frame = self._without_committed(library, symbol, pending, frame)
            if frame.empty and pending.committed is not None:
                return Commit(library, symbol, 0, pending.committed)
        if pending.high is None:
            raise RuntimeError(f"{library}/{symbol}: rows buffered without a watermark")
        parts = day_parts(symbol, frame)
        rows = 0
        for position, (target, part) in enumerate(parts):
            last = position == len(parts) - 1
            watermark = pending.high if last else advanced(pending.committed, part, pending.key_columns)
            began = time.perf_counter()
            with self._store.symbol_lock(library, target):
                self._store.library(library).append(
                    target, part, metadata=watermark.to_metadata(pending.key_columns), prune_previous_versions=False
                )
            self.append_seconds.observe(time.perf_counter() - began)
            self._store.status.write_succeeded()
            rows += len(part)
            pending.committed = watermark
            rest = frame.iloc[rows:]
            pending.frames, pending.rows = ([rest] if len(rest) else []), len(rest)
        pending.since, pending.failed = None, False
        return Commit(library, symbol, rows, pending.high)

    def _without_committed(self, library: str, symbol: str, pending: _Pending, frame: pd.DataFrame) -> pd.DataFrame:
        """After a failed append (which may have committed anyway, e.g. a lost S3 response), drop what did commit."""
        stored = self._load_watermark(library, symbol, pending.key_columns)
        if stored == pending.committed:
            return frame
        log.warning("writer.failed_append_had_committed", library=library, symbol=symbol)
        remaining, _ = after_watermark(frame, committed_since(pending.committed, stored), pending.key_columns)
        pending.committed = stored
        pending.frames, pending.rows = [remaining], len(remaining)
        if remaining.empty:
            pending.frames, pending.since, pending.failed = [], None, False
        return remaining
