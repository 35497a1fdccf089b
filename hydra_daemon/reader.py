"""Read-only, point-in-time access to the hydra store for backtests and research notebooks."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
from arcticdb.exceptions import NoDataFoundException, NoSuchVersionException
from arcticdb.version_store.library import DataError, Library, ReadInfoRequest, ReadRequest

from hydra_daemon.cme_contracts import contract_month
from hydra_daemon.errors import UserError
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal import BITEMPORAL_COLUMNS
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.cot_panel import MARKET_COLUMN, latest_versions, sources_of
from hydra_daemon.store.features import VALUE
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.maintenance import daily_snapshot_name
from hydra_daemon.store.partitions import VersionGoneError, batch_failure, read_stream, stream_symbols
from hydra_daemon.store.symbols import (
    COT,
    COT_PANEL,
    FEATURES,
    FUTURES,
    LIBRARIES,
    OPTIONS,
    SymbolNameError,
    chain_symbol,
    cot_symbol,
    data_symbol,
    feature_symbol,
    is_partitioned,
    market_of_cot,
    stream_of,
)
from hydra_daemon.store.watermark import Watermark

Output = Literal["pandas", "polars"]
Frame = TypeVar("Frame", pd.DataFrame, pl.DataFrame)

# How far back options_chain() looks for the latest snapshot before reading the whole symbol (widening windows).
_CHAIN_LOOKBACKS = (pd.Timedelta(hours=1), pd.Timedelta(days=1), pd.Timedelta(days=10), pd.Timedelta(days=100))
_CHAIN_PROBE_COLUMN = "instrument_id"  # a narrow column: probing for the snapshot time reads the index and this
# How far back (in as_of) feature_panel looks for each market's latest value before reading its whole history: a
# day of a per-minute feature first (a month of one is ~400k rows), a month for weekly (COT) features, then further.
_PANEL_LOOKBACKS = (pd.Timedelta(days=1), pd.Timedelta(days=35), pd.Timedelta(days=400), None)
_PIT_COLUMNS = ("as_of", "revision", "available_at")  # what the point-in-time pick needs, whatever `columns` asks
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class _History:
    """Every revision of one COT symbol as read from one stored version. ``order`` sorts its rows by (``as_of``,
    ``revision``, ``available_at``), so the row a point-in-time read at T keeps — the newest ``as_of`` with a row
    available by T, its highest such revision, ties to the latest ``available_at`` (the rule of
    `bitemporal.point_in_time` with key ``as_of``) — is the last row in that order available by T."""

    version: tuple[int, int]  # (version number, creation time ns) of the stored version read
    columns: frozenset[str] | None  # the columns read (None: all)
    table: pa.Table  # as read
    order: np.ndarray  # row positions in point-in-time order
    available_ns: np.ndarray  # available_at (ns) in that order

    @classmethod
    def of(cls, table: pa.Table, version: tuple[int, int], columns: Sequence[str] | None) -> _History:
        as_of, revision, available = (table[c].cast(pa.int64()).to_numpy() for c in _PIT_COLUMNS)
        order = np.lexsort((available, revision, as_of))
        wanted = None if columns is None else frozenset(columns)
        return cls(version, wanted, table, order, available[order])

    def serves(self, version: tuple[int, int], columns: Sequence[str] | None) -> bool:
        """Whether this is the history of ``version`` with every column of ``columns`` (None: all)."""
        if version != self.version:
            return False
        return self.columns is None or (columns is not None and self.columns.issuperset(columns))

    def to_read(self, version: tuple[int, int], columns: list[str] | None) -> list[str] | None:
        """The columns to read to serve ``columns`` at ``version``: with those kept when the version is the same."""
        if columns is None or version != self.version or self.columns is None:
            return columns
        return sorted(self.columns.union(columns))

    def latest_at(self, when: pd.Timestamp) -> int | None:
        """Row position (in ``table``) of the point-in-time row at ``when``; None if nothing was available by then."""
        available = np.flatnonzero(self.available_ns <= when.value)
        return int(self.order[available[-1]]) if len(available) else None


@dataclass(frozen=True)
class _Panel:
    """The COT panel (`store.cot_panel`) as read from one stored version: every market's revisions it holds, the
    version of each market symbol they were read from, and the rows in point-in-time order per market — (market,
    ``as_of``, ``revision``, ``available_at``), the order `_History` uses — so one comparison picks every market."""

    version: tuple[int, int]  # of the panel symbol
    columns: frozenset[str] | None  # the columns read (None: all)
    sources: list[tuple[str, tuple[int, int]]]  # per market number: its symbol and the version its rows are
    frame: pd.DataFrame  # as read (naive UTC, index ``ingested_at``), with the market number column
    order: np.ndarray  # row positions in point-in-time order per market
    numbers: np.ndarray  # market numbers in that order
    available_ns: np.ndarray  # available_at (ns) in that order

    @classmethod
    def of(
        cls,
        frame: pd.DataFrame,
        version: tuple[int, int],
        columns: Sequence[str] | None,
        sources: list[tuple[str, tuple[int, int]]],
    ) -> _Panel:
        numbers = frame[MARKET_COLUMN].to_numpy()
        as_of, revision, available = (_int64(frame[c]) for c in _PIT_COLUMNS)
        order = np.lexsort((available, revision, as_of, numbers))
        wanted = None if columns is None else frozenset(columns)
        return cls(version, wanted, sources, frame, order, numbers[order], available[order])

    def serves_columns(self, columns: Sequence[str] | None) -> bool:
        return self.columns is None or (columns is not None and self.columns.issuperset(columns))

    def to_read(self, columns: list[str] | None) -> list[str] | None:
        """The columns to read the panel again with to serve ``columns``: with those kept."""
        return None if columns is None or self.columns is None else sorted(self.columns.union(columns))

    @functools.cached_property
    def _numbers(self) -> dict[str, int]:
        return {symbol: number for number, (symbol, _) in enumerate(self.sources)}

    def holds(self, symbol: str, version: tuple[int, int]) -> bool:
        """Whether the panel's rows of ``symbol`` are those of its stored ``version``."""
        number = self._numbers.get(symbol)
        return number is not None and self.sources[number][1] == version

    def latest(self, symbols: set[str], when: pd.Timestamp) -> pd.DataFrame:
        """Per market of ``symbols`` (index ``market``) the point-in-time row at ``when`` of its newest ``as_of``
        (`_History.latest_at` for every market at once); markets with none are left out. Only those rows are
        taken, column by column (a row take of the whole frame would touch every one of its ~50 blocks)."""
        known = np.flatnonzero(self.available_ns <= when.value)
        numbers = self.numbers[known]
        last = known[np.r_[numbers[1:] != numbers[:-1], True]] if len(known) else known
        last = last[np.isin(self.numbers[last], [self._numbers[s] for s in symbols])]
        rows = np.sort(self.order[last])
        columns = {self.frame.index.name: self.frame.index.array.take(rows)}
        columns |= {name: self.frame[name].array.take(rows) for name in self.frame.columns if name != MARKET_COLUMN}
        markets = [market_of_cot(self.sources[number][0]) for number in self.frame[MARKET_COLUMN].to_numpy()[rows]]
        index = pd.Index(markets, name="market", dtype=object)
        return pd.DataFrame({name: _utc_values(values) for name, values in columns.items()}, index=index)


class ReaderArgumentError(UserError, ValueError):
    """A Reader method got an argument it cannot use; the message names the method, the argument and what to pass."""


def _arguments_checked(method: Callable[P, R]) -> Callable[P, R]:
    """Names that cannot be symbols (`SymbolNameError`) become a `ReaderArgumentError` naming the method; a read of
    the latest state whose version the daemon pruned under it is done once more (`_once_more_if_pruned`)."""

    @functools.wraps(method)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return _once_more_if_pruned(method, *args, **kwargs)
        except SymbolNameError as exc:
            raise ReaderArgumentError(f"Reader.{method.__name__}: {exc}") from None

    return checked


def _once_more_if_pruned(method: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call ``method``; if a version it read is gone (``NoDataFoundException``, `VersionGoneError` from a batched
    read), forget the cached versions and call it once more. The daemon deletes a superseded version `prune_grace_s`
    after a merge replaced it, so a read that picked its version earlier (ArcticDB's cached latest, up to 2 s old,
    or a bitemporal read's pinned number) and took longer than that loses it; the next read picks the merged version,
    which holds the same rows. A Reader at a snapshot reads pinned versions (never pruned) and a symbol that is not
    stored fails the same way twice."""
    try:
        return method(*args, **kwargs)
    except (NoDataFoundException, VersionGoneError):
        reader = args[0]
        if not isinstance(reader, Reader) or reader._as_of is not None:
            raise
        reader._store.forget_cached_versions()
        return method(*args, **kwargs)


class Reader(Generic[Frame]):
    """Read-only view of a hydra ArcticDB store, safe to use while the daemon writes.

    ``Reader(uri)`` opens the store with ``writer=False``: it never takes the writer lease, so it is never blocked by
    the daemon, and it works from any number of other processes (LMDB allows up to 126 readers). New data becomes
    visible within about 2 s (ArcticDB caches the latest version). Use ``with Reader(uri) as r:`` or call
    :meth:`close`.

    - ``as_of_snapshot=date(2026, 3, 4)`` reads what the store held at the end of that UTC day (the daemon's daily
      snapshot ``daily-YYYYMMDD``; the most recent `keep_daily_snapshots_days` are kept) instead of its latest state;
      every ``at`` then counts as at most the end of that day, and rows indexed (market data) or available (COT
      history) after it are left out: the snapshot, taken by the first maintenance run after midnight, also holds
      what was written in the seconds before. A day the daemon was stopped at the end of has none (``LookupError``).
    - ``output="polars"`` returns polars DataFrames (a pandas index becomes the first column) instead of pandas.
    - ``log=True`` lets the store log its opening and closing; by default the Reader logs nothing.

    Every method returns numpy-backed pandas DataFrames whose timestamps — index and columns — are tz-aware UTC
    (``datetime64[ns, UTC]``; polars ``Datetime("ns", "UTC")``). Every ``at``/``start``/``end`` must be a tz-aware
    datetime (any zone; converted to UTC) within what pandas can hold (1677-09-22 .. 2262-04-11 UTC). An argument a
    method cannot use (a naive or out-of-range time, a reversed window, a market, schema or feature name that cannot
    be a symbol, an unknown column) raises `ReaderArgumentError` (a ``ValueError``) naming the method and the
    argument; a valid name the store does not hold raises ``LookupError``. Reads ``at`` a time are point-in-time:
    nothing is returned that was not available at ``at`` (bitemporal tables: ``available_at <= at``; market data:
    index time ``<= at``). ``columns=`` keeps only those columns (read inside ArcticDB where it can).
    """

    @overload
    def __init__(
        self: Reader[pd.DataFrame],
        uri: str,
        *,
        as_of_snapshot: dt.date | None = None,
        output: Literal["pandas"] = "pandas",
        log: bool = False,
    ) -> None: ...

    @overload
    def __init__(
        self: Reader[pl.DataFrame],
        uri: str,
        *,
        as_of_snapshot: dt.date | None = None,
        output: Literal["polars"],
        log: bool = False,
    ) -> None: ...

    def __init__(
        self, uri: str, *, as_of_snapshot: dt.date | None = None, output: Output = "pandas", log: bool = False
    ) -> None:
        if output not in ("pandas", "polars"):
            raise ReaderArgumentError(f"Reader: output must be 'pandas' or 'polars', got {output!r}")
        self._output = output
        self._store = Store.open(uri, writer=False, quiet=not log)
        self._as_of: str | None = None
        self._day_end: pd.Timestamp | None = None  # of the snapshot's day: no `at` reaches past what it could know
        self._cot_cache: dict[str, _History] = {}  # per COT symbol: its history at the version last read
        self._cot_panel: _Panel | None = None  # the COT panel at the version last read
        self._in_snapshot: set[str] = set()  # libraries found to hold this Reader's snapshot
        if as_of_snapshot is not None:
            try:
                self._as_of = self._snapshot(as_of_snapshot)
                self._day_end = pd.Timestamp(as_of_snapshot, tz="UTC") + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
            except Exception:
                self._store.close()
                raise

    # --- what the store holds ---------------------------------------------------------------------------------

    @_arguments_checked
    def markets(self) -> list[str]:
        """Every market with at least one symbol in the store, sorted."""
        return sorted(
            {symbol.split(".", 1)[0] for name in self._libraries() for symbol in self._symbols(name)} - {COT_PANEL}
        )

    @_arguments_checked
    def features(self, market: str) -> list[str]:
        """The feature names stored for ``market``, sorted (read them with `feature` / `feature_panel`)."""
        return self._suffixes(FEATURES, market) if FEATURES in self._libraries() else []

    @_arguments_checked
    def schemas(self, market: str) -> dict[str, list[str]]:
        """Per library (futures, options, cot), the symbol suffixes stored for ``market`` — Databento schemas,
        ``chain``, ``cot`` — sorted; libraries without any are left out. Features: see `features`."""
        found = {name: self._suffixes(name, market) for name in self._libraries() if name != FEATURES}
        return {name: suffixes for name, suffixes in found.items() if suffixes}

    # --- market data ------------------------------------------------------------------------------------------

    @_arguments_checked
    def futures_bars(
        self,
        market: str,
        start: dt.datetime,
        end: dt.datetime,
        schema: str = "ohlcv-1d",
        *,
        columns: Sequence[str] | None = None,
    ) -> Frame:
        """Futures rows of ``schema`` for ``market`` with index time in ``[start, end]`` (inclusive).

        The index is ``ts_recv`` where the schema has one (mbp-1, trades, ...), else ``ts_event``: for OHLCV bars
        that is the bar's OPEN time, and a bar is only known at its close — for a lookahead-free read "as of T",
        pass ``end = T - bar length`` (e.g. one day for ``ohlcv-1d``)."""
        return self._records("futures_bars", FUTURES, market, schema, _window("futures_bars", start, end), columns)

    @_arguments_checked
    def records(
        self,
        library: str,
        market: str,
        schema: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        columns: Sequence[str] | None = None,
    ) -> Frame:
        """Market data of ``library`` (futures or options) — ``schema`` as listed by `schemas`, e.g. options
        ``mbp-1`` quotes, ``statistics``, ``definition`` or ``chain`` — with index time in ``[start, end]``.

        Quotes and trades are stored one symbol per UTC day (``HE.mbp-1.2026-12-01``, see `store.symbols`): only
        the days overlapping the window are read, in one batched read."""
        return self._records("records", library, market, schema, _window("records", start, end), columns)

    def _records(
        self,
        method: str,
        library: str,
        market: str,
        schema: str,
        window: tuple[pd.Timestamp | None, ...],
        columns: Sequence[str] | None,
    ) -> Frame:
        if library not in (FUTURES, OPTIONS):
            raise ReaderArgumentError(f"Reader.{method}: library must be {FUTURES!r} or {OPTIONS!r}, got {library!r}")
        first, last = window
        if first is None or last is None:
            raise ReaderArgumentError(f"Reader.{method}: start and end are required")
        symbol = chain_symbol(market) if schema == "chain" else data_symbol(market, schema)
        stored = self._library(library, symbol, (first.date(), last.date()))
        frame = read_stream(stored, symbol, date_range=(first, last), columns=columns, as_of=self._as_of).data
        rows = restore_utc(_stored_columns(frame, columns, method, symbol))
        return self._out(rows if self._day_end is None else rows[rows.index <= self._day_end])

    @_arguments_checked
    def options_chain(self, market: str, at: dt.datetime, *, columns: Sequence[str] | None = None) -> Frame:
        """The latest option-chain snapshot of ``market`` taken at or before ``at`` (all its rows, indexed by
        ``snapshot_time``); empty if none was taken by then.

        Reads one snapshot: its time comes from the chain's watermark when ``at`` is past it, else from the index
        alone (one narrow column over widening windows), then ``date_range`` reads just that snapshot's segment."""
        when = self._known_at("options_chain", at)
        symbol = chain_symbol(market)
        library = self._library(OPTIONS, symbol)
        taken = self._last_snapshot_time(library, symbol, when)
        window = (taken, taken) if taken is not None else (when, when)
        frame = self._read(library, symbol, date_range=window, columns=columns)
        return self._out(restore_utc(_stored_columns(frame, columns, "options_chain", symbol)))

    # --- COT and features (bitemporal) ------------------------------------------------------------------------

    @_arguments_checked
    def cot(
        self,
        market: str,
        at: dt.datetime,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        columns: Sequence[str] | None = None,
    ) -> Frame:
        """The COT reports of ``market`` as known at ``at``: per ``as_of`` the latest revision with
        ``available_at <= at``; only reports with ``as_of`` in ``[start, end]`` when given."""
        when = self._known_at("cot", at)
        first, last = _window("cot", start, end)
        table = self._cot_table(market)
        rows = self._read_table(table, table.query(when, first, last), first)
        return self._out(_select(table.point_in_time_of(_rows(rows), when), columns, "cot"))

    @_arguments_checked
    def cot_history(
        self,
        market: str,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        columns: Sequence[str] | None = None,
    ) -> Frame:
        """Every stored revision of ``market``'s COT reports with ``as_of`` in ``[start, end]`` (either open),
        sorted by (``as_of``, ``revision``): what was published when, for studying revisions."""
        first, last = _window("cot_history", start, end)
        table = self._cot_table(market)
        rows = _rows(self._read_table(table, table.window(first, last), first))
        if self._day_end is not None:
            rows = rows[rows["available_at"] <= self._day_end]
        history = rows.sort_values(["as_of", "revision"], kind="stable").reset_index(drop=True)
        return self._out(_select(history, columns, "cot_history"))

    @_arguments_checked
    def cot_panel(self, markets: Sequence[str], at: dt.datetime, *, columns: Sequence[str] | None = None) -> Frame:
        """The cross-section at ``at``: one row per market (index ``market``) holding its latest COT report known
        at ``at`` (newest ``as_of`` with a revision available by then), one column per report field; a market
        without any report by then (or without COT at all) has a row of missing values; ``LookupError`` if none of
        the markets has COT.

        The first call reads the markets' whole histories (only ``columns`` plus the bitemporal ones decoded) from
        the COT panel (`store.cot_panel`: one read for every market it holds at the market symbol's latest version;
        the others, in one batched read of their own symbols) and keeps them in this Reader, tied to the stored
        versions they came from; later calls — a backtest stepping ``at`` week by week — check the versions with
        one listing, re-read only markets the daemon has written since, and pick each market's row with one
        vectorised comparison. Memory: about 0.4 MB per market for 20 years of all columns."""
        when = self._known_at("cot_panel", at)
        _names("cot_panel", "markets", markets)
        held = list(dict.fromkeys(self._holding(COT, [(market, cot_symbol(market)) for market in markets])))
        latest = self._latest_reports(held, when, _with_pit_columns(columns))
        panel = latest.reindex(pd.Index(list(markets), name="market"))
        return self._out(_select(panel, columns, "cot_panel"))

    @_arguments_checked
    def feature(
        self,
        market: str,
        name: str,
        at: dt.datetime,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        columns: Sequence[str] | None = None,
    ) -> Frame:
        """Feature ``name`` of ``market`` as known at ``at``: per key the latest revision with
        ``available_at <= at``; only rows with ``as_of`` in ``[start, end]`` when given (a history window: both
        filters run inside ArcticDB, so a short window stays fast however long the history)."""
        when = self._known_at("feature", at)
        first, last = _window("feature", start, end)
        table = self._feature_table(market, name)
        rows = self._read_table(table, table.query(when, first, last), first)
        return self._out(_select(table.point_in_time_of(_rows(rows), when), columns, "feature"))

    @_arguments_checked
    def feature_panel(self, markets: Sequence[str], names: Sequence[str], at: dt.datetime) -> Frame:
        """The cross-section a backtest needs at each rebalance: one row per market (index ``market``), one column
        per feature, each the value known at ``at`` for the feature's newest ``as_of`` (available by then).

        Features keyed by more than ``as_of`` give the value of the front key at that ``as_of``: the nearest
        ``expiration`` (the options features), the nearest contract month (``settlement``, per futures ``symbol``).
        Missing values where a market has no such feature (known by then); ``LookupError`` if none of the markets has
        it. One batched read per feature."""
        when = self._known_at("feature_panel", at)
        _names("feature_panel", "markets", markets)
        _names("feature_panel", "names", names)
        index = pd.Index(list(markets), name="market")
        columns: dict[str, pd.Series] = {}
        for name in dict.fromkeys(names):  # a market or name listed twice is read once and shown twice
            held = list(dict.fromkeys(self._holding(FEATURES, [(m, feature_symbol(m, name)) for m in markets])))
            tables = [self._feature_table(market, name) for market in held]
            rows = self._panel_rows(tables, when)
            values = [_front_value(frame, table) for frame, table in zip(rows, tables, strict=True)]
            columns[name] = pd.Series(values, index=held, dtype="float64").reindex(index)
        return self._out(pd.DataFrame(columns, index=index, dtype="float64")[list(names)])

    # --- lifecycle --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Release this process's handle on the store. Idempotent."""
        self._store.close()

    def __enter__(self) -> Reader[Frame]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- helpers ----------------------------------------------------------------------------------------------

    def _latest_reports(self, markets: Sequence[str], when: pd.Timestamp, columns: list[str] | None) -> pd.DataFrame:
        """Per market (index) its newest ``as_of``'s point-in-time row at ``when``; markets without one are left out.

        Picks from each market's whole history, kept in memory per stored version: the COT panel's rows of every
        market still at the version the panel recorded (`store.cot_panel`), the market's own history otherwise
        (`_cot_histories`). One listing of the library's latest versions proves both current, so a backtest that
        asks for many ``at`` reads each market once and then pays one listing per call. Should the panel's rows and
        the others differ in columns or dtypes (markets of another schema), every market is picked from its own
        history instead: Arrow's promotion of the missing values is what the answer is defined by."""
        symbols = [cot_symbol(m) for m in markets]
        versions = self._cot_versions()
        for symbol in symbols:
            if symbol not in versions:
                raise LookupError(f"reading {COT}/{symbol} failed: it is not in the store any more")
        in_panel = self._cot_panel_serving(symbols, versions, columns)
        rest = [m for m, s in zip(markets, symbols, strict=True) if s not in in_panel]
        own = self._own_rows(rest, when, columns, versions)
        panel = self._cot_panel.latest(in_panel, when) if self._cot_panel is not None and in_panel else own.iloc[:0]
        if panel.empty and own.empty:  # nothing known by `when`: still the columns and UTC dtypes of an answer
            if not rest or not in_panel:
                return own if not in_panel else panel
            if list(panel.dtypes.items()) != list(own.dtypes.items()):
                return self._own_rows(markets, when, columns, versions)
            return panel
        if panel.empty or own.empty:
            return own if panel.empty else panel
        if columns is not None:  # either may hold more columns than asked (kept from earlier calls)
            panel, own = (frame[[c for c in frame.columns if c in columns]] for frame in (panel, own))
        if list(panel.dtypes.items()) != list(own.dtypes.items()):
            return self._own_rows(markets, when, columns, versions)
        return pd.concat([panel, own])

    def _own_rows(
        self,
        markets: Sequence[str],
        when: pd.Timestamp,
        columns: list[str] | None,
        versions: dict[str, tuple[int, int]],
    ) -> pd.DataFrame:
        """`_latest_reports` of ``markets`` from their own histories (`_cot_histories`)."""
        rows = []
        histories = self._cot_histories(markets, columns, versions)
        for market, history in histories.items():
            position = history.latest_at(when)
            if position is not None:
                row = history.table.slice(position, 1)
                rows.append(row.append_column("market", pa.array([market], pa.string())))
        if not rows and not histories:
            return pd.DataFrame(index=pd.Index([], name="market", dtype=object))
        if not rows:  # none known by `when`: no rows, but the columns and dtypes of the histories
            empty = [h.table.slice(0, 0) for h in histories.values()]
            rows = [
                pa.concat_tables(empty, promote_options="permissive").append_column("market", pa.array([], pa.string()))
            ]
        table = pa.concat_tables(rows, promote_options="permissive").replace_schema_metadata(None)
        return restore_utc(table.to_pandas().set_index("market"))  # the index: a column

    def _cot_versions(self) -> dict[str, tuple[int, int]]:
        """(version, creation ns) of every symbol of the cot library this Reader reads, in one listing."""
        return latest_versions(self._read_library(COT), self._as_of)

    def _cot_panel_serving(
        self, symbols: Sequence[str], versions: dict[str, tuple[int, int]], columns: list[str] | None
    ) -> set[str]:
        """The symbols whose rows this Reader takes from the COT panel: those the panel holds at their current
        version with ``columns``. The panel kept from an earlier call still serves every market it holds at its
        current version (even after the panel was rewritten: its recorded versions prove it); the stored panel is
        read when at least two markets would otherwise be read from their own symbols."""
        kept = self._cot_panel
        panel = kept if kept is not None and kept.serves_columns(columns) else None
        cached = {s for s in symbols if s in self._cot_cache and self._cot_cache[s].serves(versions[s], columns)}
        to_read = [s for s in symbols if s not in cached and (panel is None or not panel.holds(s, versions[s]))]
        newer = COT_PANEL in versions and (panel is None or panel.version != versions[COT_PANEL])
        if len(to_read) >= 2 and newer:
            fresh = self._read_cot_panel(columns if kept is None else kept.to_read(columns))
            if fresh is not None:
                panel = self._cot_panel = fresh
        if panel is None:
            return set()
        return {s for s in symbols if s not in cached and panel.holds(s, versions[s])}

    def _read_cot_panel(self, columns: list[str] | None) -> _Panel | None:
        """The COT panel at this Reader's snapshot (None if it vanished since the listing)."""
        wanted: list[str] | None = None
        if columns is not None:
            wanted = [MARKET_COLUMN]
            wanted.extend(columns)
        try:
            item = self._store.library(COT).read(COT_PANEL, as_of=self._as_of, columns=wanted)
        except (NoDataFoundException, NoSuchVersionException):  # deleted since the listing: read per market
            return None
        sources = sources_of(item.metadata)
        if sources is None:
            return None
        return _Panel.of(item.data, (item.version, item.timestamp), columns, sources)

    def _cot_histories(
        self, markets: Sequence[str], columns: list[str] | None, versions: dict[str, tuple[int, int]]
    ) -> dict[str, _History]:
        """Per market, every revision of its COT reports (``columns``; None: all) at the version this Reader reads.

        ``versions`` (one listing) says which stored version each symbol is at; a market whose cached history was
        read from that very version (number and creation time: a symbol deleted and written again cannot match)
        with the columns asked is reused, the others are read in one batch and cached under the version their read
        returned. A cached history is therefore always exactly what a read now would return (ArcticDB itself sees
        a new version within ~2 s); compaction writes a new version and so costs one re-read."""
        library = self._read_library(COT)
        symbols = [cot_symbol(m) for m in markets]
        stale: dict[str, list[str] | None] = {}
        for symbol in symbols:
            cached = self._cot_cache.get(symbol)
            if cached is None:
                stale[symbol] = columns
            elif not cached.serves(versions[symbol], columns):
                stale[symbol] = cached.to_read(versions[symbol], columns)
        requests = [ReadRequest(s, as_of=self._as_of, columns=c) for s, c in stale.items()]
        results = library.read_batch(requests, output_format="pyarrow") if requests else []
        for symbol, result in zip(stale, results, strict=True):
            if isinstance(result, DataError):
                raise batch_failure(library.name, symbol, result)
            self._cot_cache[symbol] = _History.of(result.data, (result.version, result.timestamp), stale[symbol])
        return {m: self._cot_cache[s] for m, s in zip(markets, symbols, strict=True)}

    def _panel_rows(self, tables: Sequence[BitemporalTable], when: pd.Timestamp) -> list[pd.DataFrame]:
        """Per table, its point-in-time rows at ``when`` with ``as_of`` in widening windows ending at ``when``,
        until each has some (batched reads of all tables still empty, each of the version whose metadata was read
        first and only of the segments ingested since its window can begin: `BitemporalTable.start_of`)."""
        if not tables:
            return []
        library = tables[0].library
        versions = library.read_metadata_batch([ReadInfoRequest(t.symbol, as_of=self._as_of) for t in tables])
        for table, item in zip(tables, versions, strict=True):
            if isinstance(item, DataError):
                raise batch_failure(library.name, table.symbol, item)
        found: list[pd.DataFrame | None] = [None] * len(tables)
        for lookback in _PANEL_LOOKBACKS:
            todo = [i for i, frame in enumerate(found) if frame is None or frame.empty]
            if not todo:
                break
            first = _before(when, lookback)
            requests = []
            for i in todo:
                version, begin = tables[i].start_of(versions[i], first, self._as_of)
                window = None if begin is None else (begin, None)
                query = tables[i].query(when, first, None)
                requests.append(ReadRequest(tables[i].symbol, as_of=version, date_range=window, query_builder=query))
            for i, result in zip(todo, library.read_batch(requests), strict=True):
                if isinstance(result, DataError):
                    raise batch_failure(library.name, tables[i].symbol, result)
                found[i] = tables[i].point_in_time_of(_rows(result.data), when)
        return [frame if frame is not None else pd.DataFrame() for frame in found]

    def _holding(self, library: str, symbols: Sequence[tuple[str, str]]) -> list[str]:
        """The markets of (market, symbol) pairs whose symbol is stored; ``LookupError`` (from `_library`, naming the
        first symbol) if none is."""
        stored = set(self._symbols(library)) if library in self._libraries() else set()
        held = [market for market, symbol in symbols if symbol in stored]
        if symbols and not held:
            self._library(library, symbols[0][1])
        return held

    def _cot_table(self, market: str) -> BitemporalTable:
        symbol = cot_symbol(market)
        return BitemporalTable(self._library(COT, symbol), symbol)

    def _feature_table(self, market: str, name: str) -> BitemporalTable:
        symbol = feature_symbol(market, name)
        library = self._library(FEATURES, symbol)
        names: list[str] = [c.name for c in library.get_description(symbol, as_of=self._as_of).columns]
        keys = ("as_of", *(name for name in names if name not in (*BITEMPORAL_COLUMNS, VALUE)))
        return BitemporalTable(library, symbol, keys)

    def _read(
        self,
        library: Library,
        symbol: str,
        *,
        date_range: tuple[pd.Timestamp | None, pd.Timestamp | None] | None = None,
        columns: Sequence[str] | None = None,
        query: Any = None,
    ) -> pd.DataFrame:
        """One ArcticDB read at this Reader's snapshot (or the latest version)."""
        wanted = None if columns is None else list(columns)
        return library.read(symbol, as_of=self._as_of, date_range=date_range, columns=wanted, query_builder=query).data

    def _read_table(self, table: BitemporalTable, query: Any, start: pd.Timestamp | None) -> pd.DataFrame:
        """One read of a bitemporal table at this Reader's snapshot, skipping the segments ingested before rows
        with ``as_of >= start`` can begin (`BitemporalTable.where_from`)."""
        version, first = table.where_from(start, self._as_of)
        window = None if first is None else (first, None)
        return table.library.read(table.symbol, as_of=version, date_range=window, query_builder=query).data

    def _last_snapshot_time(self, library: Library, symbol: str, when: pd.Timestamp) -> pd.Timestamp | None:
        """Time of the newest chain snapshot at or before ``when`` (None if there is none)."""
        newest = Watermark.from_metadata(library.read_metadata(symbol, as_of=self._as_of).metadata)
        if newest is not None and newest.timestamp <= when:
            return newest.timestamp
        for lookback in (*_CHAIN_LOOKBACKS, None):
            first = _before(when, lookback)
            index = self._read(library, symbol, date_range=(first, when), columns=[_CHAIN_PROBE_COLUMN]).index
            if len(index):
                return pd.Timestamp(index[-1]).tz_convert("UTC")
        return None

    def _libraries(self) -> list[str]:
        return [name for name in LIBRARIES if self._store.has_library(name)]

    def _symbols(self, library_name: str) -> list[str]:
        """The logical symbols of a library (a day-partitioned stream once, by its name without the day)."""
        library = self._store.library(library_name)
        if self._as_of is None:
            listed = library.list_symbols()
        else:
            listed = library.list_symbols(snapshot_name=self._as_of) if self._as_of in library.list_snapshots() else []
        return list(dict.fromkeys(stream_of(symbol) for symbol in listed))

    def _suffixes(self, library_name: str, market: str) -> list[str]:
        prefix = f"{market}."
        return sorted(s[len(prefix) :] for s in self._symbols(library_name) if s.startswith(prefix))

    def _known_at(self, method: str, at: dt.datetime) -> pd.Timestamp:
        """``at`` in UTC, at most the end of the snapshot's day: the daily snapshot is taken at the first maintenance
        run after midnight, so it also holds what was written in the seconds before (a chain snapshot, features),
        which the store did not hold at the end of the day."""
        when = _utc(method, "at", at)
        return when if self._day_end is None else min(when, self._day_end)

    def _snapshot(self, day: dt.date) -> str:
        """The daily snapshot holding the store at the end of UTC ``day``; ``LookupError`` naming the ones kept."""
        if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
            raise ReaderArgumentError(f"Reader: as_of_snapshot must be a date (a UTC day), got {type(day).__name__}")
        name = daily_snapshot_name(day)
        kept: set[str] = set()
        for library_name in self._libraries():
            kept |= set(self._store.library(library_name).list_snapshots())
        if name not in kept:
            days = sorted(s for s in kept if s.startswith("daily-"))
            raise LookupError(
                f"Reader: no snapshot {name!r} (the end of UTC day {day}) in the store (the daemon takes one at the "
                f"end of each day it is running through); daily snapshots kept: {', '.join(days[-10:]) or 'none yet'}"
            )
        return name

    def _library(self, name: str, symbol: str, days: tuple[dt.date, dt.date] | None = None) -> Library:
        """Library ``name``; ``LookupError`` saying what is missing if it or ``symbol`` (a day-partitioned stream: a
        partition of it, looked up by name among ``days`` first) is not in the store (or in this Reader's snapshot).
        Looked up by name, not in a listing of the library, which gains a partition per stream every day."""
        library = self._read_library(name)
        if not library.has_symbol(symbol, self._as_of) and not self._partitions_stored(library, symbol, days):
            where = "the store" if self._as_of is None else f"snapshot {self._as_of}"
            raise LookupError(
                f"no symbol {symbol!r} in library {name!r} of {where}; check the market/schema/feature name "
                "or whether the daemon has captured it yet (Reader.markets(), .schemas(m), .features(m) list them)"
            )
        return library

    def _read_library(self, name: str) -> Library:
        """Library ``name``; ``LookupError`` if it does not hold this Reader's snapshot (it was created after that
        day): ArcticDB would answer every read of it with its own ``NoDataFoundException``."""
        library = self._store.library(name)
        if self._as_of is not None and name not in self._in_snapshot:
            if self._as_of not in library.list_snapshots():
                raise LookupError(
                    f"library {name!r} has no snapshot {self._as_of}: it held nothing at the end of that day (it was "
                    "created later); read a later day, or without as_of_snapshot"
                )
            self._in_snapshot.add(name)
        return library

    def _partitions_stored(self, library: Library, stream: str, days: tuple[dt.date, dt.date] | None) -> bool:
        if not is_partitioned(stream):
            return False
        if days is not None and stream_symbols(library, stream, first=days[0], last=days[1], as_of=self._as_of):
            return True
        return bool(stream_symbols(library, stream, as_of=self._as_of))  # none among days: any day? (a listing)

    def _out(self, frame: pd.DataFrame) -> Frame:
        if self._output == "pandas":
            return cast(Frame, frame)
        named = frame.index.name is not None
        return cast(Frame, pl.from_pandas(frame.reset_index() if named else frame.reset_index(drop=True)))


def _names(method: str, argument: str, names: Sequence[str]) -> None:
    """A list of names, not one string (which would be read letter by letter)."""
    if isinstance(names, str):
        raise ReaderArgumentError(f"Reader.{method}: {argument} must be a list of names, got the string {names!r}")


def _int64(column: pd.Series) -> np.ndarray:
    """A timestamp (ns, naive or UTC) or integer column as int64 values."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return pd.DatetimeIndex(column).asi8
    values = column.to_numpy()
    return values.view("int64") if values.dtype.kind == "M" else values.astype("int64", copy=False)


def _utc_values(values: Any) -> Any:
    """Values of a column as read (pandas) as a read to Arrow gives them: naive timestamps (UTC values) made UTC
    (`frames.restore_utc` for one column), every missing value of a text column None (pandas keeps a NaN)."""
    if isinstance(values, pd.arrays.DatetimeArray) and values.tz is None:
        return values.tz_localize("UTC")
    if isinstance(values, pd.arrays.NumpyExtensionArray) and values.dtype.numpy_dtype.kind == "O":
        text = values.to_numpy()
        return np.where(pd.isna(text), np.array(None, dtype=object), text)
    return values


def _rows(stored: pd.DataFrame) -> pd.DataFrame:
    """Bitemporal rows as read (index ``ingested_at``) as plain columns, UTC restored."""
    return restore_utc(stored).reset_index()


def _select(frame: pd.DataFrame, columns: Sequence[str] | None, method: str) -> pd.DataFrame:
    """``frame[columns]`` (all when None); `ReaderArgumentError` naming the unknown ones and what there is."""
    if columns is None:
        return frame
    unknown = [c for c in columns if c not in frame.columns]
    if unknown and len(frame.columns):  # an empty answer still names its columns
        raise ReaderArgumentError(f"Reader.{method}: unknown columns {unknown}; it has {list(frame.columns)}")
    return frame.reindex(columns=list(columns))


def _stored_columns(frame: pd.DataFrame, columns: Sequence[str] | None, method: str, symbol: str) -> pd.DataFrame:
    """``frame`` as ArcticDB read it with ``columns``; `ReaderArgumentError` for a column it does not hold (ArcticDB
    leaves those out silently, and a bare string would be read letter by letter: an empty answer, not an error)."""
    if columns is None:
        return frame
    _names(method, "columns", columns)
    unknown = [c for c in columns if c not in frame.columns and c != frame.index.name]
    if unknown:
        raise ReaderArgumentError(f"Reader.{method}: unknown columns {unknown}: {symbol} stores no column of that name")
    return frame


def _with_pit_columns(columns: Sequence[str] | None) -> list[str] | None:
    """``columns`` (None: all) plus those the point-in-time pick needs, for ArcticDB to decode."""
    return None if columns is None else list(dict.fromkeys([*columns, *_PIT_COLUMNS]))


def _front_value(frame: pd.DataFrame, table: BitemporalTable) -> float:
    """The value at the newest ``as_of`` of point-in-time rows, for the first of the other keys (NaN if none): the
    nearest expiration, or the nearest contract month of a ``symbol`` key (the settlement feature; outrights before
    anything else)."""
    if frame.empty:
        return float("nan")
    newest = frame[frame["as_of"] == frame["as_of"].max()]
    if "symbol" in table.keys:
        on = newest["as_of"].iloc[0].date()
        months = [contract_month(str(symbol), on) or (dt.MAXYEAR, 13) for symbol in newest["symbol"]]
        newest = newest.assign(_contract=months)
        return float(newest.sort_values(["_contract", *table.keys], kind="stable")[VALUE].iloc[0])
    return float(newest.sort_values(list(table.keys), kind="stable")[VALUE].iloc[0])


def _before(when: pd.Timestamp, span: pd.Timedelta | None) -> pd.Timestamp | None:
    """``when - span``; None (from the beginning) for no span or one reaching before what pandas can hold."""
    try:
        return None if span is None else when - span
    except (OverflowError, ValueError):  # OutOfBoundsDatetime is a ValueError
        return None


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
