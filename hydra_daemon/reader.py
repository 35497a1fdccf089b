"""Read-only, point-in-time access to the hydra store for backtests and research notebooks."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import ParamSpec, TypeVar

import pandas as pd
from arcticdb.version_store.library import DataError, Library, ReadRequest

from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.symbols import (
    COT,
    FEATURES,
    FUTURES,
    OPTIONS,
    SymbolNameError,
    chain_symbol,
    cot_symbol,
    data_symbol,
    feature_symbol,
)
from hydra_daemon.store.watermark import Watermark

# How far back options_chain() looks for the latest snapshot before reading the whole symbol (widening windows).
_CHAIN_LOOKBACKS = (pd.Timedelta(hours=1), pd.Timedelta(days=1), pd.Timedelta(days=10), pd.Timedelta(days=100))
_CHAIN_PROBE_COLUMN = "instrument_id"  # a narrow column: probing for the snapshot time reads the index and this
P = ParamSpec("P")
R = TypeVar("R")


class ReaderArgumentError(ValueError):
    """A Reader method got an argument it cannot use; the message names the method, the argument and what to pass."""


def _arguments_checked(method: Callable[P, R]) -> Callable[P, R]:
    """Names that cannot be symbols (`SymbolNameError`) become a `ReaderArgumentError` naming the method."""

    @functools.wraps(method)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except SymbolNameError as exc:
            raise ReaderArgumentError(f"Reader.{method.__name__}: {exc}") from None

    return checked


class Reader:
    """Read-only view of a hydra ArcticDB store, safe to use while the daemon writes.

    ``Reader(uri)`` opens the store with ``writer=False``: it never takes the writer lease, so it is never blocked by
    the daemon, and it works from any number of other processes (LMDB allows up to 126 readers). New data becomes
    visible within about 2 s (ArcticDB caches the latest version). Use ``with Reader(uri) as r:`` or call
    :meth:`close`.

    Every method returns a numpy-backed pandas DataFrame whose timestamps — index and columns — are tz-aware UTC
    (``datetime64[ns, UTC]``); ArcticDB hands back non-index timestamp columns naive, the Reader restores UTC.
    Every ``at``/``start``/``end`` must be a tz-aware datetime (any zone; converted to UTC) within what pandas can
    hold (1677-09-22 .. 2262-04-11 UTC). An argument a method cannot use (a naive or out-of-range time, a reversed
    window, a market, schema or feature name that cannot be a symbol) raises `ReaderArgumentError` (a
    ``ValueError``) naming the method and the argument; a valid name the store does not hold raises ``LookupError``.
    Reads ``at`` a time are point-in-time: nothing is returned that was not available at ``at`` (bitemporal tables:
    ``available_at <= at``; market data: index time ``<= at``).
    """

    def __init__(self, uri: str) -> None:
        self._store = Store.open(uri, writer=False)

    @_arguments_checked
    def futures_bars(self, market: str, start: dt.datetime, end: dt.datetime, schema: str = "ohlcv-1d") -> pd.DataFrame:
        """Futures rows of ``schema`` for ``market`` with index time in ``[start, end]`` (inclusive).

        The index is ``ts_recv`` where the schema has one (mbp-1, trades, ...), else ``ts_event``: for OHLCV bars
        that is the bar's OPEN time, and a bar is only known at its close — for a lookahead-free read "as of T",
        pass ``end = T - bar length`` (e.g. one day for ``ohlcv-1d``)."""
        first, last = _utc("futures_bars", "start", start), _utc("futures_bars", "end", end)
        if last < first:
            raise ReaderArgumentError(f"Reader.futures_bars: end {last} is before start {first}")
        symbol = data_symbol(market, schema)
        frame = self._library(FUTURES, symbol).read(symbol, date_range=(first, last)).data
        return restore_utc(frame)

    @_arguments_checked
    def options_chain(self, market: str, at: dt.datetime) -> pd.DataFrame:
        """The latest option-chain snapshot of ``market`` taken at or before ``at`` (all its rows, indexed by
        ``snapshot_time``); empty if none was taken by then.

        Reads one snapshot: its time comes from the chain's watermark when ``at`` is past it, else from the index
        alone (one narrow column over widening windows), then ``date_range`` reads just that snapshot's segment."""
        when = _utc("options_chain", "at", at)
        symbol = chain_symbol(market)
        library = self._library(OPTIONS, symbol)
        taken = self._last_snapshot_time(library, symbol, when)
        frame = library.read(symbol, date_range=(taken, taken) if taken is not None else (when, when)).data
        return restore_utc(frame)

    @_arguments_checked
    def cot(
        self, market: str, at: dt.datetime, *, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> pd.DataFrame:
        """The COT reports of ``market`` as known at ``at``: per ``as_of`` the latest revision with
        ``available_at <= at``; only reports with ``as_of`` in ``[start, end]`` when given."""
        when = _utc("cot", "at", at)
        first, last = _window("cot", start, end)
        return self._cot_table(market).point_in_time(when, first, last)

    @_arguments_checked
    def cot_panel(
        self,
        markets: Sequence[str],
        at: dt.datetime,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> pd.DataFrame:
        """`cot` for many markets in one batched read, stacked with a ``market`` column (for cross-sections)."""
        when = _utc("cot_panel", "at", at)
        first, last = _window("cot_panel", start, end)
        if isinstance(markets, str):
            raise ReaderArgumentError(f"Reader.cot_panel: markets must be a list of names, got the string {markets!r}")
        symbols = [cot_symbol(market) for market in markets]
        for symbol in symbols:
            self._library(COT, symbol)
        tables = [BitemporalTable(self._store.library(COT), symbol) for symbol in symbols]
        requests = [ReadRequest(t.symbol, query_builder=t.query(when, first, last)) for t in tables]
        results = self._store.library(COT).read_batch(requests)
        frames = []
        for market, table, result in zip(markets, tables, results, strict=True):
            if isinstance(result, DataError):
                raise LookupError(f"cot_panel: reading {table.symbol} failed: {result}")
            frame = table.point_in_time_of(restore_utc(result.data).reset_index(), when)
            frames.append(frame.assign(market=market))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    @_arguments_checked
    def cot_history(self, market: str) -> pd.DataFrame:
        """Every stored revision of ``market``'s COT reports, sorted by (``as_of``, ``revision``)."""
        return self._cot_table(market).history()

    @_arguments_checked
    def feature(
        self,
        market: str,
        name: str,
        at: dt.datetime,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> pd.DataFrame:
        """Feature ``name`` of ``market`` as known at ``at``: per key the latest revision with
        ``available_at <= at``; only rows with ``as_of`` in ``[start, end]`` when given (a history window: both
        filters run inside ArcticDB, so a short window stays fast however long the history)."""
        when = _utc("feature", "at", at)
        first, last = _window("feature", start, end)
        self._library(FEATURES, feature_symbol(market, name))
        return FeatureStore(self._store).read_feature(market, name, when, start=first, end=last)

    def close(self) -> None:
        """Release this process's handle on the store. Idempotent."""
        self._store.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _cot_table(self, market: str) -> BitemporalTable:
        symbol = cot_symbol(market)
        return BitemporalTable(self._library(COT, symbol), symbol)

    @staticmethod
    def _last_snapshot_time(library: Library, symbol: str, when: pd.Timestamp) -> pd.Timestamp | None:
        """Time of the newest chain snapshot at or before ``when`` (None if there is none)."""
        newest = Watermark.from_metadata(library.read_metadata(symbol).metadata)
        if newest is not None and newest.timestamp <= when:
            return newest.timestamp
        for lookback in (*_CHAIN_LOOKBACKS, None):
            first = None if lookback is None else when - lookback
            index = library.read(symbol, date_range=(first, when), columns=[_CHAIN_PROBE_COLUMN]).data.index
            if len(index):
                return pd.Timestamp(index[-1]).tz_convert("UTC")
        return None

    def _library(self, name: str, symbol: str) -> Library:
        """Library ``name``; ``LookupError`` saying what is missing if it or ``symbol`` is not in the store."""
        library = self._store.library(name)
        if not library.has_symbol(symbol):
            raise LookupError(
                f"no symbol {symbol!r} in library {name!r} of the store; check the market/schema/feature name "
                "or whether the daemon has captured it yet"
            )
        return library


def _utc(method: str, argument: str, value: dt.datetime) -> pd.Timestamp:
    """``value`` as a UTC Timestamp; `ReaderArgumentError` naming the method and argument if it is not a datetime,
    naive (or its zone gives no offset), or outside what pandas timestamps can hold."""
    if not isinstance(value, dt.datetime) or value is pd.NaT:
        raise ReaderArgumentError(f"Reader.{method}: {argument} must be a datetime, got {type(value).__name__}")
    try:
        offset = value.utcoffset()
    except Exception as exc:  # a tzinfo may raise anything
        raise ReaderArgumentError(f"Reader.{method}: {argument}: its time zone fails ({exc})") from None
    if offset is None:
        raise ReaderArgumentError(
            f"Reader.{method}: {argument}={value} is timezone-naive; pass a UTC-aware datetime, e.g. "
            "datetime(2024, 1, 2, 21, 0, tzinfo=timezone.utc) or pd.Timestamp('2024-01-02 21:00', tz='UTC')"
        )
    try:
        return pd.Timestamp(value).tz_convert("UTC").as_unit("ns")  # ArcticDB needs nanoseconds: check they fit
    except (OverflowError, ValueError) as exc:  # OutOfBoundsDatetime is a ValueError
        raise ReaderArgumentError(
            f"Reader.{method}: {argument}={value} is outside the times the store can hold "
            f"({pd.Timestamp.min.ceil('D'):%Y-%m-%d} .. {pd.Timestamp.max.floor('D'):%Y-%m-%d} UTC): {exc}"
        ) from None


def _window(method: str, start: dt.datetime | None, end: dt.datetime | None) -> tuple[pd.Timestamp | None, ...]:
    """Optional ``[start, end]`` as UTC Timestamps; `ReaderArgumentError` if naive, out of range or reversed."""
    first = None if start is None else _utc(method, "start", start)
    last = None if end is None else _utc(method, "end", end)
    if first is not None and last is not None and last < first:
        raise ReaderArgumentError(f"Reader.{method}: end {last} is before start {first}")
    return first, last
