"""The pure, seeded market model: generates every record of the venue once, in emission order.

`MarketModel.advance(until_ns)` returns the `Emission`s with emission time < until_ns. The stream is a function of
the `MarketConfig` alone (not of how `advance` calls are spaced), so the same seed gives the same bytes.
Option quotes are symmetric around a mid on the half-tick grid; the `OptionTruth` attached to each option quote
holds the exact Black-76 inputs, so `black76_price(truth...) == truth.mid` to solver precision.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from databento_dbn import (
    FIXED_PRICE_SCALE,
    UNDEF_PRICE,
    Action,
    BidAskPair,
    MBP1Msg,
    OHLCVMsg,
    RType,
    Side,
    StatMsg,
    StatType,
    StatUpdateAction,
    TradeMsg,
)

from hydra_daemon.sim.black76 import black76_price, implied_vol
from hydra_daemon.sim.config import PUBLISHER_ID, MarketConfig
from hydra_daemon.sim.instruments import Instrument, build_instruments, definition_record, initial_forward

SCHEMAS = ("mbp-1", "trades", "ohlcv-1m", "ohlcv-1d", "definition", "statistics")
NS_PER_S = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_S
NS_PER_DAY = 86_400 * NS_PER_S
_NS_PER_YEAR = 365 * NS_PER_DAY
_UNDEF_STAT_QUANTITY = 2**63 - 1
_F_LAST = 128
# DBN enum members are typed as plain str/int in databento_dbn's stubs; constructing them keeps mypy exact.
_MODIFY, _TRADE = Action("M"), Action("T")
_BID, _ASK = Side("B"), Side("A")
_OHLCV_1M, _OHLCV_1D = RType(0x21), RType(0x23)
_SETTLEMENT, _OPEN_INTEREST = StatType(3), StatType(9)
_NEW = StatUpdateAction(1)


@dataclass(frozen=True, slots=True)
class OptionTruth:
    """The exact Black-76 inputs behind one option quote: black76(is_call, forward, strike, t_years, rate, vol) == mid.

    `mid` == (bid_px + ask_px) / 2 / 1e9 of the quote, `forward` == the same of the underlying future's latest quote.
    """

    instrument_id: int
    ts_recv: int
    is_call: bool
    forward: float
    strike: float
    t_years: float
    rate: float
    vol: float
    mid: float


@dataclass(frozen=True, slots=True)
class Emission:
    """One encoded record. `key_ns` is what Historical filters on (ts_recv, or ts_event for OHLCV bars);
    `emitted_ns` is when the venue published it (bars: at their close), what Live `start=` replay filters on."""

    schema: str
    key_ns: int
    instrument_id: int
    data: bytes
    truth: OptionTruth | None = None
    emitted_ns: int = 0

    @property
    def published_ns(self) -> int:
        return self.emitted_ns or self.key_ns


@dataclass
class _Book:
    bid_px: int
    ask_px: int
    bid_sz: int
    ask_sz: int


@dataclass
class _Bar:
    open: int
    high: int
    low: int
    close: int
    volume: int = 0

    def add(self, price: int, size: int) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += size


def is_trading_day(ts_ns: int) -> bool:
    """Weekdays (UTC) trade; weekends are silent."""
    return ((ts_ns // NS_PER_DAY) + 3) % 7 < 5  # 1970-01-01 was a Thursday


@dataclass
class _State:
    fair: dict[int, float] = field(default_factory=dict)
    fair_ts: dict[int, int] = field(default_factory=dict)
    books: dict[int, _Book] = field(default_factory=dict)
    open_interest: dict[int, int] = field(default_factory=dict)
    minute_bars: dict[int, _Bar] = field(default_factory=dict)
    day_bars: dict[int, _Bar] = field(default_factory=dict)
    sequence: int = 0


class MarketModel:
    """Seeded random-walk futures curve + Black-76 options chains, emitting GLBX-style DBN records."""

    def __init__(self, config: MarketConfig) -> None:
        self.config = config
        self.instruments = build_instruments(config)
        self.by_id = {i.instrument_id: i for i in self.instruments}
        self.start_ns = int(config.start.timestamp()) * NS_PER_S
        self._rng = random.Random(config.seed)
        self._state = _State()
        self._now = self.start_ns
        self._started = False
        self._next_minute = (self.start_ns // NS_PER_MINUTE + 1) * NS_PER_MINUTE
        self._max_mult = max(config.burst_multiplier, 1.0)
        self._lambda_per_ns = config.base_rate * self._max_mult / config.speed / NS_PER_S
        self._next_candidate = self.start_ns + self._draw_gap()
        self._init_state()

    @property
    def now_ns(self) -> int:
        """Emission time up to which the model has generated."""
        return self._now

    def _init_state(self) -> None:
        curve_index: dict[str, int] = {}
        for inst in self.instruments:
            if inst.kind != "F":
                continue
            index = curve_index.get(inst.product.future_root, 0)
            curve_index[inst.product.future_root] = index + 1
            self._state.fair[inst.instrument_id] = initial_forward(inst.product, index)
            self._state.fair_ts[inst.instrument_id] = self.start_ns
        for inst in self.instruments:
            base = 20_000 if inst.kind == "F" else 2_000
            self._state.open_interest[inst.instrument_id] = self._rng.randrange(base // 10, base)

    def _draw_gap(self) -> int:
        return max(1, int(self._rng.expovariate(self._lambda_per_ns)))

    def _rate_multiplier(self, ts_ns: int) -> float:
        cfg = self.config
        if not is_trading_day(ts_ns):
            return 0.0
        if cfg.burst_period_s <= 0 or cfg.burst_duration_s <= 0:
            return 1.0
        wall_elapsed = (ts_ns - self.start_ns) / NS_PER_S / cfg.speed
        return cfg.burst_multiplier if wall_elapsed % cfg.burst_period_s < cfg.burst_duration_s else 1.0

    def advance(self, until_ns: int) -> list[Emission]:
        """Generate every record with emission time < `until_ns`, in emission order."""
        out: list[Emission] = []
        if not self._started:
            self._started = True
            if is_trading_day(self.start_ns):
                self._open_day(self.start_ns, out)
        while True:
            if self._next_minute <= self._next_candidate:
                if self._next_minute >= until_ns:
                    break
                self._close_minute(self._next_minute, out)
                self._next_minute += NS_PER_MINUTE
            else:
                if self._next_candidate >= until_ns:
                    break
                ts = self._next_candidate
                if self._rng.random() * self._max_mult < self._rate_multiplier(ts):
                    self._random_event(ts, out)
                self._next_candidate = ts + self._draw_gap()
        self._now = max(self._now, until_ns)
        return out

    # --- scheduled events -------------------------------------------------------------------------------------

    def _close_minute(self, boundary: int, out: list[Emission]) -> None:
        self._emit_bars(self._state.minute_bars, _OHLCV_1M, "ohlcv-1m", boundary - NS_PER_MINUTE, boundary, out)
        if boundary % NS_PER_DAY == 0:
            day_start = boundary - NS_PER_DAY
            if is_trading_day(day_start):
                self._emit_bars(self._state.day_bars, _OHLCV_1D, "ohlcv-1d", day_start, boundary, out)
                self._emit_settlements(boundary, day_start, out)
            if is_trading_day(boundary):
                self._open_day(boundary, out)

    def _emit_bars(
        self, bars: dict[int, _Bar], rtype: RType, schema: str, ts_event: int, closed_ns: int, out: list[Emission]
    ) -> None:
        for iid in sorted(bars):
            bar = bars[iid]
            msg = OHLCVMsg(int(rtype), PUBLISHER_ID, iid, ts_event, bar.open, bar.high, bar.low, bar.close, bar.volume)
            out.append(Emission(schema, ts_event, iid, bytes(msg), emitted_ns=closed_ns))
        bars.clear()

    def _stat(self, inst: Instrument, ts: int, ts_ref: int, stat_type: StatType, price: int, quantity: int) -> Emission:
        self._state.sequence += 1
        msg = StatMsg(
            publisher_id=PUBLISHER_ID,
            instrument_id=inst.instrument_id,
            ts_event=ts,
            ts_recv=ts,
            ts_ref=ts_ref,
            price=price,
            quantity=quantity,
            stat_type=stat_type,
            sequence=self._state.sequence,
            update_action=_NEW,
        )
        return Emission("statistics", ts, inst.instrument_id, bytes(msg))

    def _emit_settlements(self, ts: int, day_start: int, out: list[Emission]) -> None:
        for inst in self._live_instruments(ts):
            book = self._state.books.get(inst.instrument_id)
            if book is not None:
                settle = (book.bid_px + book.ask_px) // 2
                out.append(self._stat(inst, ts, day_start, _SETTLEMENT, settle, _UNDEF_STAT_QUANTITY))
            oi = self._state.open_interest[inst.instrument_id]
            oi = max(0, oi + int(self._rng.uniform(-0.02, 0.03) * oi))
            self._state.open_interest[inst.instrument_id] = oi
            out.append(self._stat(inst, ts, day_start, _OPEN_INTEREST, UNDEF_PRICE, oi))

    def _open_day(self, ts: int, out: list[Emission]) -> None:
        live = self._live_instruments(ts)
        for inst in live:
            out.append(
                Emission("definition", ts, inst.instrument_id, bytes(definition_record(inst, ts, self.start_ns)))
            )
        for inst in live:
            if inst.kind == "F":
                self._quote(inst, ts, out, trade=False)
        for inst in live:
            if inst.kind != "F":
                self._quote(inst, ts, out, trade=False)

    def _live_instruments(self, ts: int) -> list[Instrument]:
        return [i for i in self.instruments if i.expiration_ns > ts]

    # --- random events ----------------------------------------------------------------------------------------

    def _random_event(self, ts: int, out: list[Emission]) -> None:
        live = self._live_instruments(ts)
        futures = [i for i in live if i.kind == "F"]
        options = [i for i in live if i.kind != "F"]
        if not futures:
            return
        if not options or self._rng.random() < self.config.future_event_share:
            inst = self._rng.choice(futures)
            self._walk_future(inst, ts)
        else:
            inst = self._rng.choice(options)
        self._quote(inst, ts, out, trade=self._rng.random() < self.config.trade_probability)

    def _walk_future(self, inst: Instrument, ts: int) -> None:
        iid = inst.instrument_id
        dt_years = (ts - self._state.fair_ts[iid]) / _NS_PER_YEAR
        shock = inst.product.atm_vol * math.sqrt(dt_years) * self._rng.gauss(0.0, 1.0)
        self._state.fair[iid] *= math.exp(shock - 0.5 * (inst.product.atm_vol**2) * dt_years)
        self._state.fair_ts[iid] = ts

    def _quote(self, inst: Instrument, ts: int, out: list[Emission], trade: bool) -> None:
        tick_fp = round(inst.product.tick * FIXED_PRICE_SCALE)
        half = tick_fp // 2
        truth: OptionTruth | None = None
        if inst.kind == "F":
            spread = self._rng.randint(1, 2)
            mid2 = max(round(self._state.fair[inst.instrument_id] * FIXED_PRICE_SCALE / half), spread + 2)
        else:
            quoted = self._option_mid2(inst, ts, half)
            if quoted is None:
                return
            mid2, spread = quoted
        spread += (spread + mid2) % 2
        bid_px, ask_px = (mid2 - spread) * half, (mid2 + spread) * half
        size_cap = 60 if inst.kind == "F" else 30
        book = _Book(bid_px, ask_px, self._rng.randint(1, size_cap), self._rng.randint(1, size_cap))
        self._state.books[inst.instrument_id] = book
        if inst.kind != "F":
            truth = self._truth(inst, ts, book)
            if truth is None:
                return
        latency = self._rng.randrange(5_000, 200_000)
        delta = self._rng.randrange(1_000, 30_000)
        if trade:
            self._trade(inst, ts, latency, delta, book, out, truth)
            return
        side = _BID if self._rng.random() < 0.5 else _ASK
        price, size = (book.bid_px, book.bid_sz) if side == _BID else (book.ask_px, book.ask_sz)
        out.append(self._mbp(inst, ts, latency, delta, _MODIFY, side, price, size, book, truth))

    def _mbp(
        self,
        inst: Instrument,
        ts: int,
        latency: int,
        delta: int,
        action: Action,
        side: Side,
        price: int,
        size: int,
        book: _Book,
        truth: OptionTruth | None,
    ) -> Emission:
        self._state.sequence += 1
        # the stub says list[BidAskPair]; the runtime takes exactly one pair
        level: Any = BidAskPair(book.bid_px, book.ask_px, book.bid_sz, book.ask_sz, 1, 1)
        msg = MBP1Msg(
            PUBLISHER_ID,
            inst.instrument_id,
            ts - latency,
            price,
            size,
            action,
            side,
            0,
            ts,
            flags=_F_LAST,
            ts_in_delta=delta,
            sequence=self._state.sequence,
            levels=level,
        )
        return Emission("mbp-1", ts, inst.instrument_id, bytes(msg), truth)

    def _trade(
        self,
        inst: Instrument,
        ts: int,
        latency: int,
        delta: int,
        book: _Book,
        out: list[Emission],
        truth: OptionTruth | None,
    ) -> None:
        buy = self._rng.random() < 0.5
        side = _BID if buy else _ASK  # aggressor side
        price = book.ask_px if buy else book.bid_px
        size = self._rng.randint(1, 10)
        self._state.sequence += 1
        msg = TradeMsg(
            PUBLISHER_ID,
            inst.instrument_id,
            ts - latency,
            price,
            size,
            _TRADE,
            side,
            0,
            ts,
            flags=_F_LAST,
            ts_in_delta=delta,
            sequence=self._state.sequence,
        )
        out.append(Emission("trades", ts, inst.instrument_id, bytes(msg)))
        out.append(self._mbp(inst, ts, latency, delta, _TRADE, side, price, size, book, truth))
        for bars in (self._state.minute_bars, self._state.day_bars):
            bar = bars.get(inst.instrument_id)
            if bar is None:
                bars[inst.instrument_id] = _Bar(price, price, price, price, size)
            else:
                bar.add(price, size)

    # --- options ----------------------------------------------------------------------------------------------

    def _forward(self, inst: Instrument) -> float | None:
        assert inst.underlying is not None
        book = self._state.books.get(inst.underlying.instrument_id)
        if book is None:
            return None
        return (book.bid_px + book.ask_px) / 2 / FIXED_PRICE_SCALE

    def smile_vol(self, inst: Instrument, forward: float) -> float:
        """The smile the venue prices from: ATM vol with put skew and curvature in log-moneyness."""
        assert inst.strike is not None
        moneyness = math.log(inst.strike / forward)
        return max(0.05, inst.product.atm_vol - 0.15 * moneyness + 0.8 * moneyness * moneyness)

    def _option_mid2(self, inst: Instrument, ts: int, half: int) -> tuple[int, int] | None:
        forward = self._forward(inst)
        assert inst.strike is not None
        t_years = (inst.expiration_ns - ts) / _NS_PER_YEAR
        if forward is None or t_years <= 0:
            return None
        is_call = inst.kind == "C"
        price = black76_price(is_call, forward, inst.strike, t_years, self.config.rate, self.smile_vol(inst, forward))
        intrinsic = math.exp(-self.config.rate * t_years) * max(
            forward - inst.strike if is_call else inst.strike - forward, 0.0
        )
        spread = self._rng.randint(1, 3)
        floor2 = math.floor(intrinsic * FIXED_PRICE_SCALE / half) + 1
        return max(round(price * FIXED_PRICE_SCALE / half), floor2, spread + 2), spread

    def _truth(self, inst: Instrument, ts: int, book: _Book) -> OptionTruth | None:
        forward = self._forward(inst)
        assert forward is not None and inst.strike is not None
        t_years = (inst.expiration_ns - ts) / _NS_PER_YEAR
        mid = (book.bid_px + book.ask_px) / 2 / FIXED_PRICE_SCALE
        vol = implied_vol(inst.kind == "C", mid, forward, inst.strike, t_years, self.config.rate)
        if vol is None:
            return None
        return OptionTruth(
            inst.instrument_id, ts, inst.kind == "C", forward, inst.strike, t_years, self.config.rate, vol, mid
        )
