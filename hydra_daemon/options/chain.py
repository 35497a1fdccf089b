"""Option chain state for one market, and the chain snapshot (pure: no I/O).

The state takes three kinds of events, in any order:
- `Definition` (options and their underlying futures; `security_update_action` 'D' removes one);
- `Quote` (top of book from mbp-1, for options and futures);
- `Statistic` — open interest (`StatType.OPEN_INTEREST` = 9) and volume. Volume is the exchange's
  `StatType.CLEARED_VOLUME` (= 6) from the statistics schema — the official cleared figure for the last session,
  so no trades subscription is needed. A statistic with update action DELETE clears the value.

Every event is ordered by its `ts_recv` (the Live stream's order; `ts_event` is not monotonic): the newest wins,
ties go to the later arrival, so any interleaving of definitions with the quote stream yields the same state.

Quotes and statistics for instruments whose definition has not arrived yet are held and used as soon as it does.
At most `max_undefined` such instruments are held; beyond that the longest-waiting one is evicted and counted in
`evicted_undefined` (the pipeline logs it).

The underlying futures price of an option is the mid of its future's two-sided, uncrossed quote. The future is found
by `underlying_id`, else by raw symbol `underlying` (options may sit under another root than their future, e.g.
LO options on CL futures), so the options session also subscribes the market's `{futures_root}.FUT` definitions
and mbp-1 into the same state. A snapshot row carries two underlying prices: `underlying_price`, the future's mid
at the snapshot (used to pick the at-the-money strike), and `iv_underlying_price`, its mid as of the option quote's
`ts_recv` — the implied vol uses synchronous prices (option mid, future mid and time to expiry all at the quote
time), so a stale option quote is not paired with a newer futures price. For that the state keeps a short mid
history per non-option instrument, pruned at each snapshot to what the oldest held option quote needs.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from databento_dbn import StatType

from hydra_daemon.ingest import Problem
from hydra_daemon.options.implied_vol import IvStatus, black76_implied_vol, year_fraction
from hydra_daemon.options.validation import QuoteFlag, RowCheck, check_row

CALL = "C"
PUT = "P"
FUTURE = "F"
OPTION_CLASSES = (CALL, PUT)
OPEN_INTEREST = int(StatType.OPEN_INTEREST)
CLEARED_VOLUME = int(StatType.CLEARED_VOLUME)
_UNDEF_QUANTITY = 2**63 - 1
_STAT_DELETE = 2


@dataclass(frozen=True)
class Definition:
    """The parts of an instrument definition the chain needs; prices in decimal units, times in UTC ns."""

    instrument_id: int
    ts_recv: int
    raw_symbol: str
    instrument_class: str
    expiration_ns: int
    strike: float
    underlying: str
    underlying_id: int
    min_price_increment: float
    deleted: bool = False


@dataclass(frozen=True)
class Quote:
    """Top of book; a missing side is NaN with size 0."""

    instrument_id: int
    ts_recv: int
    bid: float
    ask: float
    bid_size: int
    ask_size: int

    @property
    def two_sided(self) -> bool:
        return math.isfinite(self.bid) and math.isfinite(self.ask)

    @property
    def mid(self) -> float:
        """Mid price of a two-sided, uncrossed quote; NaN otherwise."""
        if not self.two_sided or self.ask < self.bid:
            return math.nan
        return (self.bid + self.ask) / 2


@dataclass(frozen=True)
class Statistic:
    """One venue statistic; `quantity` is None when undefined; `deleted` clears the stored value."""

    instrument_id: int
    ts_recv: int
    stat_type: int
    quantity: int | None
    deleted: bool = False


ChainEvent = Definition | Quote | Statistic


@dataclass(frozen=True)
class QuoteBatch:
    """Many quotes as columns (numpy arrays of equal length), in stream order; prices decimal, NaN when missing."""

    instrument_id: np.ndarray
    ts_recv: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> QuoteBatch:
        """From a decoded mbp-1 frame (UTC `ts_recv` index)."""
        return cls(
            frame["instrument_id"].to_numpy(dtype=np.int64),
            pd.DatetimeIndex(frame.index).asi8,
            frame["bid_px_00"].to_numpy(dtype=np.float64),
            frame["ask_px_00"].to_numpy(dtype=np.float64),
            frame["bid_sz_00"].to_numpy(dtype=np.int64),
            frame["ask_sz_00"].to_numpy(dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.instrument_id)

    def take(self, rows: np.ndarray) -> QuoteBatch:
        """The quotes selected by `rows` (a boolean mask or indices), in that order."""
        return QuoteBatch(*(column[rows] for column in self._columns()))

    def mids(self) -> np.ndarray:
        """Mid of each two-sided, uncrossed quote; NaN otherwise (as `Quote.mid`)."""
        valid = np.isfinite(self.bid) & np.isfinite(self.ask) & (self.ask >= self.bid)
        return np.where(valid, (self.bid + self.ask) / 2, np.nan)

    def quote(self, row: int) -> Quote:
        return Quote(
            int(self.instrument_id[row]),
            int(self.ts_recv[row]),
            float(self.bid[row]),
            float(self.ask[row]),
            int(self.bid_size[row]),
            int(self.ask_size[row]),
        )

    def _columns(self) -> tuple[np.ndarray, ...]:
        return (self.instrument_id, self.ts_recv, self.bid, self.ask, self.bid_size, self.ask_size)


EVENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "definition": (
        "instrument_id",
        "raw_symbol",
        "instrument_class",
        "expiration",
        "strike_price",
        "underlying",
        "underlying_id",
        "min_price_increment",
        "security_update_action",
    ),
    "mbp-1": ("instrument_id", "bid_px_00", "ask_px_00", "bid_sz_00", "ask_sz_00"),
    "statistics": ("instrument_id", "stat_type", "quantity", "update_action"),
}
"""Per schema, the frame columns `events_from_frame` reads (besides the `ts_recv` index)."""


def events_from_frame(schema: str, frame: pd.DataFrame) -> list[ChainEvent]:
    """Chain events from one decoded frame (`hydra_daemon.databento.decode.to_frame`: UTC `ts_recv` index, decimal
    prices with NaN for undefined), in frame order; schemas other than definition/mbp-1/statistics give none."""
    if frame.empty or schema not in EVENT_COLUMNS:
        return []
    ts = pd.DatetimeIndex(frame.index).asi8.tolist()
    ids = frame["instrument_id"].to_numpy(dtype=np.int64).tolist()
    if schema == "definition":
        return [
            Definition(*fields)
            for fields in zip(
                ids,
                ts,
                frame["raw_symbol"].tolist(),
                frame["instrument_class"].tolist(),
                pd.DatetimeIndex(frame["expiration"]).asi8.tolist(),
                frame["strike_price"].to_numpy(dtype=np.float64).tolist(),
                frame["underlying"].tolist(),
                frame["underlying_id"].to_numpy(dtype=np.int64).tolist(),
                frame["min_price_increment"].to_numpy(dtype=np.float64).tolist(),
                (frame["security_update_action"] == "D").tolist(),
                strict=True,
            )
        ]
    if schema == "mbp-1":
        return [
            Quote(*fields)
            for fields in zip(
                ids,
                ts,
                frame["bid_px_00"].to_numpy(dtype=np.float64).tolist(),
                frame["ask_px_00"].to_numpy(dtype=np.float64).tolist(),
                frame["bid_sz_00"].to_numpy(dtype=np.int64).tolist(),
                frame["ask_sz_00"].to_numpy(dtype=np.int64).tolist(),
                strict=True,
            )
        ]
    quantities = [None if q == _UNDEF_QUANTITY else q for q in frame["quantity"].to_numpy(dtype=np.int64).tolist()]
    return [
        Statistic(*fields)
        for fields in zip(
            ids,
            ts,
            frame["stat_type"].to_numpy(dtype=np.int64).tolist(),
            quantities,
            (frame["update_action"] == _STAT_DELETE).tolist(),
            strict=True,
        )
    ]


@dataclass
class MidHistory:
    """Mids of one instrument by `ts_recv`, for looking up the price in force at an earlier time."""

    times: list[int] = field(default_factory=list)
    mids: list[float] = field(default_factory=list)

    def add(self, ts_recv: int, mid: float) -> None:
        index = bisect.bisect_right(self.times, ts_recv)
        self.times.insert(index, ts_recv)
        self.mids.insert(index, mid)

    def extend(self, times: np.ndarray, mids: np.ndarray) -> None:
        """`add` each pair, in order (appended directly when they continue the history in time order)."""
        in_order = bool(np.all(times[1:] >= times[:-1]))
        if in_order and (not self.times or not len(times) or int(times[0]) >= self.times[-1]):
            self.times.extend(times.tolist())
            self.mids.extend(mids.tolist())
            return
        for ts_recv, mid in zip(times.tolist(), mids.tolist(), strict=True):
            self.add(ts_recv, mid)

    def at(self, ts_recv: int) -> float:
        """The mid in force at `ts_recv` (the last one at or before it); NaN if none is known."""
        index = bisect.bisect_right(self.times, ts_recv) - 1
        return math.nan if index < 0 else self.mids[index]

    def forget_before(self, ts_recv: int, max_len: int) -> None:
        """Drop entries no lookup at or after `ts_recv` needs; then keep at most `max_len` newest."""
        drop = max(bisect.bisect_right(self.times, ts_recv) - 1, len(self.times) - max_len, 0)
        del self.times[:drop], self.mids[:drop]


@dataclass
class ChainState:
    """Latest definitions, quotes, open interest and volume for one market's options and their futures."""

    max_undefined: int = 100_000
    max_history: int = 100_000
    definitions: dict[int, Definition] = field(default_factory=dict)
    quotes: dict[int, Quote] = field(default_factory=dict)
    open_interest: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (ts_recv, quantity)
    volume: dict[int, tuple[int, int]] = field(default_factory=dict)
    mid_history: dict[int, MidHistory] = field(default_factory=dict)  # non-option instruments only
    evicted_undefined: int = 0
    _undefined: OrderedDict[int, None] = field(default_factory=OrderedDict)
    _futures_by_symbol: dict[str, int] = field(default_factory=dict)

    def apply(self, event: ChainEvent) -> None:
        """Fold one event into the state."""
        if isinstance(event, Definition):
            self._apply_definition(event)
        elif isinstance(event, Quote):
            self._apply_quote(event)
        else:
            self._apply_statistic(event)

    @property
    def undefined_count(self) -> int:
        """Instruments with quotes or statistics held while their definition is awaited."""
        return len(self._undefined)

    def _is_option(self, instrument_id: int) -> bool:
        definition = self.definitions.get(instrument_id)
        return definition is not None and definition.instrument_class in OPTION_CLASSES

    def apply_quotes(self, batch: QuoteBatch) -> None:
        """Fold many quotes at once; the same state as `apply` of each in order, without per-quote Python for all
        but the newest quote of each instrument (non-option mids are appended to their histories in bulk)."""
        if not len(batch):
            return
        unique, inverse = np.unique(batch.instrument_id, return_inverse=True)
        option = np.array([self._is_option(int(iid)) for iid in unique.tolist()], dtype=bool)
        history = ~option[inverse]
        if history.any():
            self._extend_histories(batch.take(np.flatnonzero(history)))
        for row in _newest_rows(batch.instrument_id, batch.ts_recv).tolist():
            self._keep_newest(batch.quote(row))

    def _extend_histories(self, batch: QuoteBatch) -> None:
        order = np.argsort(batch.instrument_id, kind="stable")
        ids, times, mids = batch.instrument_id[order], batch.ts_recv[order], batch.mids()[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        for start, stop in zip(starts.tolist(), [*starts[1:].tolist(), len(ids)], strict=True):
            history = self.mid_history.setdefault(int(ids[start]), MidHistory())
            history.extend(times[start:stop], mids[start:stop])

    def _apply_quote(self, quote: Quote) -> None:
        if not self._is_option(quote.instrument_id):
            self.mid_history.setdefault(quote.instrument_id, MidHistory()).add(quote.ts_recv, quote.mid)
        self._keep_newest(quote)

    def _keep_newest(self, quote: Quote) -> None:
        current = self.quotes.get(quote.instrument_id)
        if current is None or quote.ts_recv >= current.ts_recv:
            self.quotes[quote.instrument_id] = quote
            self._hold_if_undefined(quote.instrument_id)

    def _apply_definition(self, definition: Definition) -> None:
        current = self.definitions.get(definition.instrument_id)
        if current is not None and definition.ts_recv < current.ts_recv:
            return
        if definition.deleted:
            self.definitions.pop(definition.instrument_id, None)
            if current is not None and self._futures_by_symbol.get(current.raw_symbol) == current.instrument_id:
                del self._futures_by_symbol[current.raw_symbol]
            return
        self.definitions[definition.instrument_id] = definition
        self._undefined.pop(definition.instrument_id, None)
        if definition.instrument_class in OPTION_CLASSES:
            self.mid_history.pop(definition.instrument_id, None)
        if definition.instrument_class == FUTURE:
            self._futures_by_symbol[definition.raw_symbol] = definition.instrument_id

    def _apply_statistic(self, stat: Statistic) -> None:
        if stat.stat_type == OPEN_INTEREST:
            table = self.open_interest
        elif stat.stat_type == CLEARED_VOLUME:
            table = self.volume
        else:
            return
        current = table.get(stat.instrument_id)
        if current is not None and stat.ts_recv < current[0]:
            return
        if stat.deleted:
            table.pop(stat.instrument_id, None)
        elif stat.quantity is not None:
            table[stat.instrument_id] = (stat.ts_recv, stat.quantity)
            self._hold_if_undefined(stat.instrument_id)

    def _hold_if_undefined(self, instrument_id: int) -> None:
        if instrument_id in self.definitions or instrument_id in self._undefined:
            return
        self._undefined[instrument_id] = None
        while len(self._undefined) > self.max_undefined:
            evicted, _ = self._undefined.popitem(last=False)
            self.quotes.pop(evicted, None)
            self.open_interest.pop(evicted, None)
            self.volume.pop(evicted, None)
            self.mid_history.pop(evicted, None)
            self.evicted_undefined += 1

    def underlying_future(self, option: Definition) -> Definition | None:
        """The future an option is written on: by `underlying_id`, else by raw symbol."""
        future = self.definitions.get(option.underlying_id)
        if future is not None and future.instrument_class == FUTURE:
            return future
        future_id = self._futures_by_symbol.get(option.underlying)
        return None if future_id is None else self.definitions.get(future_id)

    def options(self) -> list[Definition]:
        """Option definitions, ordered by (expiration, strike, call/put, instrument id)."""
        found = [d for d in self.definitions.values() if d.instrument_class in OPTION_CLASSES]
        return sorted(found, key=lambda d: (d.expiration_ns, d.strike, d.instrument_class, d.instrument_id))

    def forget_expired(self, at_ns: int) -> None:
        """Drop every instrument whose expiration date is not after `at_ns`'s UTC date (its options are rejected by
        every snapshot from now on, snapshots never go back in time): its definition, quote, statistics, history."""
        day_ns = 86_400 * 10**9
        expired = [iid for iid, d in self.definitions.items() if d.expiration_ns // day_ns <= at_ns // day_ns]
        for iid in expired:
            definition = self.definitions.pop(iid)
            if self._futures_by_symbol.get(definition.raw_symbol) == iid:
                del self._futures_by_symbol[definition.raw_symbol]
            for table in (self.quotes, self.open_interest, self.volume, self.mid_history):
                table.pop(iid, None)

    def forget_stale_history(self) -> None:
        """Trim mid histories to what the oldest held option (or undefined) quote still needs."""
        needed = [q.ts_recv for iid, q in self.quotes.items() if self._is_option(iid) or iid in self._undefined]
        oldest = min(needed, default=None)
        for history in self.mid_history.values():
            if history.times:
                history.forget_before(oldest if oldest is not None else history.times[-1], self.max_history)


def _newest_rows(instrument_ids: np.ndarray, ts_recv: np.ndarray) -> np.ndarray:
    """Per instrument, the row `apply` in stream order would keep: the latest of its newest `ts_recv`; in stream
    order of those rows."""
    if bool(np.all(ts_recv[1:] >= ts_recv[:-1])):  # the usual case: the last row of each instrument
        _, from_end = np.unique(instrument_ids[::-1], return_index=True)
        return np.sort(len(instrument_ids) - 1 - from_end)
    positions = np.arange(len(instrument_ids))
    order = np.lexsort((positions, ts_recv, instrument_ids))
    ids = instrument_ids[order]
    return np.sort(order[np.r_[ids[1:] != ids[:-1], True]])


CHAIN_COLUMNS = (
    "instrument_id",
    "raw_symbol",
    "expiration",
    "strike",
    "put_call",
    "bid",
    "ask",
    "bid_size",
    "ask_size",
    "quote_time",
    "open_interest",
    "volume",
    "underlying",
    "underlying_price",
    "iv_underlying_price",
    "implied_vol",
    "iv_status",
    "quote_flags",
    "min_price_increment",
)


@dataclass(frozen=True)
class ChainSnapshot:
    """One market's chain at `at`: a frame indexed by `snapshot_time` (UTC), plus problems found in it."""

    at: pd.Timestamp
    frame: pd.DataFrame
    problems: list[Problem]


def snapshot_chain(state: ChainState, at_ns: int) -> ChainSnapshot:
    """The chain as of `at_ns`: rows validated, IVs computed; rejected rows are left out, flagged rows kept.

    Columns are `CHAIN_COLUMNS`; `quote_time` is the quote's `ts_recv` (NaT without a quote); open interest and
    volume are NaN until a statistic arrives.
    """
    rows: list[dict[str, object]] = []
    problems: list[Problem] = []
    for option in state.options():
        quote = state.quotes.get(option.instrument_id)
        check = check_row(
            raw_symbol=option.raw_symbol,
            strike=option.strike,
            expiration_ns=option.expiration_ns,
            bid=math.nan if quote is None else quote.bid,
            ask=math.nan if quote is None else quote.ask,
            at_ns=at_ns,
        )
        problems.extend(check.problems)
        if not check.rejected:
            rows.append(_row(state, option, quote, check))
    at = pd.Timestamp(at_ns, unit="ns", tz="UTC")
    frame = _typed({column: [row[column] for row in rows] for column in CHAIN_COLUMNS})
    frame.index = pd.DatetimeIndex([at] * len(frame), name="snapshot_time")
    return ChainSnapshot(at=at, frame=frame, problems=problems)


def _row(state: ChainState, option: Definition, quote: Quote | None, check: RowCheck) -> dict[str, object]:
    future = state.underlying_future(option)
    history = None if future is None else state.mid_history.get(future.instrument_id)
    future_quote = None if future is None else state.quotes.get(future.instrument_id)
    iv_future_price = math.nan if history is None or quote is None else history.at(quote.ts_recv)
    vol, status = _implied_vol(option, quote, check, iv_future_price)
    oi = state.open_interest.get(option.instrument_id)
    volume = state.volume.get(option.instrument_id)
    return {
        "instrument_id": option.instrument_id,
        "raw_symbol": option.raw_symbol,
        "expiration": option.expiration_ns,
        "strike": option.strike,
        "put_call": option.instrument_class,
        "bid": math.nan if quote is None else quote.bid,
        "ask": math.nan if quote is None else quote.ask,
        "bid_size": 0 if quote is None else quote.bid_size,
        "ask_size": 0 if quote is None else quote.ask_size,
        "quote_time": None if quote is None else quote.ts_recv,
        "open_interest": math.nan if oi is None else float(oi[1]),
        "volume": math.nan if volume is None else float(volume[1]),
        "underlying": option.underlying if future is None else future.raw_symbol,
        "underlying_price": math.nan if future_quote is None else future_quote.mid,
        "iv_underlying_price": iv_future_price,
        "implied_vol": vol,
        "iv_status": str(status),
        "quote_flags": ",".join(sorted(str(flag) for flag in check.flags)),
        "min_price_increment": option.min_price_increment,
    }


def _implied_vol(
    option: Definition, quote: Quote | None, check: RowCheck, future_price: float
) -> tuple[float, IvStatus]:
    if quote is None or not quote.two_sided:
        return math.nan, IvStatus.NO_QUOTE
    if check.flags & {QuoteFlag.CROSSED, QuoteFlag.NEGATIVE_BID}:
        return math.nan, IvStatus.INVALID_QUOTE
    years = year_fraction(option.expiration_ns, quote.ts_recv)
    return black76_implied_vol(quote.mid, future_price, option.strike, years, option.instrument_class == CALL)


_FLOAT_COLUMNS = (
    "strike",
    "bid",
    "ask",
    "open_interest",
    "volume",
    "underlying_price",
    "iv_underlying_price",
    "implied_vol",
    "min_price_increment",
)


def _typed(columns: dict[str, list[object]]) -> pd.DataFrame:
    typed: dict[str, object] = {}
    for name, values in columns.items():
        if name in ("expiration", "quote_time"):
            typed[name] = pd.to_datetime(pd.array(values, dtype="Int64"), unit="ns", utc=True)
        elif name in ("instrument_id", "bid_size", "ask_size"):
            typed[name] = np.asarray(values, dtype=np.int64)
        elif name in _FLOAT_COLUMNS:
            typed[name] = np.asarray(values, dtype=np.float64)
        else:
            typed[name] = np.asarray(values, dtype=object)
    return pd.DataFrame(typed, columns=list(CHAIN_COLUMNS))
