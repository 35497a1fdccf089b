"""The pure market model: determinism, option prices that recover the venue's vol, consistent bars."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import databento as db
import pytest
from databento_dbn import FIXED_PRICE_SCALE, UNDEF_PRICE, MBP1Msg, Metadata, OHLCVMsg, RType, SType, TradeMsg
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from vollib.black.implied_volatility import implied_volatility

from hydra_daemon.sim.black76 import black76_price, implied_vol
from hydra_daemon.sim.config import CRUDE_OIL, LIVE_CATTLE, MarketConfig
from hydra_daemon.sim.market import NS_PER_DAY, NS_PER_MINUTE, Emission, MarketModel
from tests.helpers import fast_config

CONFIG = fast_config().market


def stream(config: MarketConfig, until_ns: int, steps: int) -> bytes:
    model = MarketModel(config)
    out = bytearray()
    for k in range(1, steps + 1):
        out += b"".join(e.data for e in model.advance(model.start_ns + (until_ns - model.start_ns) * k // steps))
    return bytes(out)


def test_same_seed_same_bytes_whatever_the_tick_spacing() -> None:
    until = MarketModel(CONFIG).start_ns + NS_PER_DAY // 16
    assert stream(CONFIG, until, 1) == stream(CONFIG, until, 97)
    assert stream(CONFIG, until, 1) != stream(replace(CONFIG, seed=CONFIG.seed + 1), until, 1)


def test_option_quotes_recover_the_venue_vol() -> None:
    model = MarketModel(CONFIG)
    emissions = model.advance(model.start_ns + NS_PER_DAY // 8)
    checked = 0
    for emission, record in zip(emissions, decode(emissions), strict=True):
        truth = emission.truth
        if truth is None:
            continue
        assert isinstance(record, MBP1Msg)
        mid = (record.levels[0].bid_px + record.levels[0].ask_px) / 2 / FIXED_PRICE_SCALE
        assert mid == truth.mid
        flag = "c" if truth.is_call else "p"
        recovered = implied_volatility(mid, truth.forward, truth.strike, truth.rate, truth.t_years, flag)
        assert recovered == pytest.approx(truth.vol, abs=1e-6)
        checked += 1
    assert checked > 100


def decode(emissions: list[Emission]) -> list[Any]:
    metadata = Metadata("GLBX.MDP3", 0, None, SType("instrument_id"), None).encode()
    return list(db.DBNStore.from_bytes(metadata + b"".join(e.data for e in emissions)))


def test_bars_are_consistent_with_trades() -> None:
    model = MarketModel(CONFIG)
    emissions = model.advance(model.start_ns + NS_PER_DAY // 8)
    trades: dict[tuple[int, int], list[TradeMsg]] = defaultdict(list)
    bars = []
    for record in decode(emissions):
        if isinstance(record, TradeMsg):
            trades[(record.instrument_id, record.ts_recv // NS_PER_MINUTE * NS_PER_MINUTE)].append(record)
        elif isinstance(record, OHLCVMsg) and record.rtype == RType.OHLCV_1M:
            bars.append(record)
    assert bars
    for bar in bars:
        minute = trades.pop((bar.instrument_id, bar.ts_event))
        prices = [t.price for t in minute]
        assert (bar.open, bar.high, bar.low, bar.close) == (prices[0], max(prices), min(prices), prices[-1])
        assert bar.volume == sum(t.size for t in minute)
    assert all(key[1] >= bars[-1].ts_event for key in trades)  # only the still-open minute has no bar yet


def test_other_roots_list_options_on_their_future() -> None:
    model = MarketModel(MarketConfig(products=(CRUDE_OIL, LIVE_CATTLE)))
    options = [i for i in model.instruments if i.is_option]
    assert {i.parent for i in options} == {"LO.OPT", "LE.OPT"}
    crude = next(i for i in options if i.product is CRUDE_OIL)
    assert crude.underlying is not None and crude.underlying.raw_symbol.startswith("CL")
    assert crude.raw_symbol.startswith("LO") and crude.expiration_ns < crude.underlying.expiration_ns
    assert len({i.instrument_id for i in model.instruments}) == len(model.instruments)
    assert [i.instrument_id for i in MarketModel(MarketConfig(products=(CRUDE_OIL, LIVE_CATTLE))).instruments] == [
        i.instrument_id for i in model.instruments
    ]


@settings(max_examples=200, deadline=None)
@given(
    is_call=st.booleans(),
    forward=st.floats(20, 300),
    moneyness=st.floats(-0.2, 0.2),
    t_years=st.floats(0.05, 2.0),
    vol=st.floats(0.1, 1.5),
)
def test_black76_inversion_recovers_the_vol(
    is_call: bool, forward: float, moneyness: float, t_years: float, vol: float
) -> None:
    assume(abs(math.log(1 + moneyness)) <= 2.5 * vol * math.sqrt(t_years))  # enough time value to invert
    strike = forward * (1 + moneyness)
    price = black76_price(is_call, forward, strike, t_years, 0.04, vol)
    recovered = implied_vol(is_call, price, forward, strike, t_years, 0.04)
    assert recovered == pytest.approx(vol, abs=1e-6)


def quote_count(config: MarketConfig, wall_seconds: float) -> int:
    model = MarketModel(config)
    emissions = model.advance(model.start_ns + int(wall_seconds * config.speed * 1e9))
    return sum(1 for e in emissions if e.schema == "mbp-1")


def test_rates_are_per_wall_second_whatever_the_speed() -> None:
    monday = datetime(2026, 11, 2, 15, tzinfo=UTC)
    real_time = quote_count(MarketConfig(start=monday, speed=1.0, base_rate=50.0), 60)
    accelerated = quote_count(MarketConfig(start=monday, speed=100.0, base_rate=50.0), 60)
    assert 2500 < real_time < 3600 and 2500 < accelerated < 3600  # 50/s * 60 s, plus the opening quotes


def test_bursts_multiply_the_rate_inside_their_windows() -> None:
    config = MarketConfig(start=datetime(2026, 11, 2, 15, tzinfo=UTC), speed=10.0, base_rate=100.0,
                          burst_multiplier=5.0, burst_duration_s=2.0, burst_period_s=10.0)  # fmt: skip
    model = MarketModel(config)
    emissions = model.advance(model.start_ns + int(100 * config.speed * 1e9))  # 100 wall seconds
    inside = outside = 0
    for e in emissions:
        if e.schema != "mbp-1" or e.key_ns == model.start_ns:
            continue
        wall = (e.key_ns - model.start_ns) / 1e9 / config.speed
        if wall % 10.0 < 2.0:
            inside += 1
        else:
            outside += 1
    assert 3.5 < (inside / 20.0) / (outside / 80.0) < 6.5  # 20 s of bursts vs 80 s of base rate


def test_weekends_are_silent() -> None:
    friday_evening = datetime(2026, 11, 6, 22, tzinfo=UTC)
    model = MarketModel(MarketConfig(start=friday_evening, speed=3600.0, base_rate=20.0))
    saturday = int(datetime(2026, 11, 7, tzinfo=UTC).timestamp()) * 10**9
    emissions = model.advance(saturday + 2 * NS_PER_DAY + NS_PER_DAY // 2)  # to Monday noon
    weekend = [e for e in emissions if saturday <= e.key_ns < saturday + 2 * NS_PER_DAY]
    assert weekend and {e.schema for e in weekend} <= {"ohlcv-1d", "statistics"}  # Friday's close, at midnight
    assert all(e.key_ns == saturday or e.schema == "ohlcv-1d" for e in weekend)
    assert any(e.schema == "definition" and e.key_ns == saturday + 2 * NS_PER_DAY for e in emissions)


def test_daily_bars_are_consistent_with_the_days_trades_and_minute_bars() -> None:
    model = MarketModel(replace(CONFIG, base_rate=60.0))
    emissions = model.advance(model.start_ns + NS_PER_DAY + NS_PER_DAY // 4)  # Mon 23:55 .. Wed 05:55: two closes
    trades: dict[tuple[int, int], list[TradeMsg]] = defaultdict(list)
    minutes: dict[tuple[int, int], list[OHLCVMsg]] = defaultdict(list)
    days = []
    for record in decode(emissions):
        if isinstance(record, TradeMsg):
            trades[(record.instrument_id, record.ts_recv // NS_PER_DAY * NS_PER_DAY)].append(record)
        elif isinstance(record, OHLCVMsg) and record.rtype == RType.OHLCV_1M:
            minutes[(record.instrument_id, record.ts_event // NS_PER_DAY * NS_PER_DAY)].append(record)
        elif isinstance(record, OHLCVMsg):
            days.append(record)
    full_days = {bar.ts_event for bar in days}
    assert len(full_days) == 2 and all(t % NS_PER_DAY == 0 for t in full_days)
    for bar in days:
        day = trades.pop((bar.instrument_id, bar.ts_event))
        prices = [t.price for t in day]
        assert (bar.open, bar.high, bar.low, bar.close) == (prices[0], max(prices), min(prices), prices[-1])
        assert bar.volume == sum(t.size for t in day)
        bars = minutes[(bar.instrument_id, bar.ts_event)]
        assert (bar.open, bar.close) == (bars[0].open, bars[-1].close)
        assert (bar.high, bar.low) == (max(b.high for b in bars), min(b.low for b in bars))
        assert bar.volume == sum(b.volume for b in bars)
    assert all(day > max(full_days) for _, day in trades)  # only the still-open day has no daily bar yet


def test_definitions_carry_the_fields_of_real_glbx_definitions() -> None:
    real = next(iter(db.DBNStore.from_file(REAL_DEFINITIONS)))
    model = MarketModel(CONFIG)
    definitions = {r.instrument_id: r for r in decode(model.advance(model.start_ns + 1)) if hasattr(r, "raw_symbol")}
    assert set(definitions) == set(model.by_id)
    for iid, definition in definitions.items():
        inst = model.by_id[iid]
        assert definition.raw_symbol == inst.raw_symbol and definition.instrument_class == inst.kind
        assert definition.expiration == inst.expiration_ns > definition.activation
        assert definition.min_price_increment == round(inst.product.tick * FIXED_PRICE_SCALE)
        assert definition.display_factor == round(inst.product.display_factor * FIXED_PRICE_SCALE)
        if inst.underlying is None:
            assert (definition.strike_price, definition.underlying_id, definition.underlying) == (UNDEF_PRICE, 0, "")
        else:
            assert definition.strike_price == round(inst.strike * FIXED_PRICE_SCALE)  # type: ignore[operator]
            assert definition.strike_price % definition.min_price_increment == 0
            assert (definition.underlying_id, definition.underlying) == (
                inst.underlying.instrument_id,
                inst.underlying.raw_symbol,
            )
        populated = {name for name in DEFINITION_FIELDS if _is_set(getattr(real, name))}
        missing = {name for name in populated if not _is_set(getattr(definition, name))}
        assert missing == NOT_SIMULATED, inst.raw_symbol


REAL_DEFINITIONS = Path(__file__).resolve().parents[1] / "data" / "test_data.definition.dbn.zst"
DEFINITION_FIELDS = (
    "activation", "asset", "cfi", "currency", "display_factor", "exchange", "expiration", "group", "instrument_class",
    "market_depth", "match_algorithm", "maturity_month", "maturity_year", "max_trade_vol", "min_price_increment",
    "min_price_increment_amount", "min_trade_vol", "publisher_id", "raw_symbol", "security_type",
    "security_update_action", "unit_of_measure", "unit_of_measure_qty", "user_defined_instrument",
    "appl_id", "high_limit_price", "low_limit_price", "max_price_variation", "inst_attrib_value",
    "market_segment_id", "underlying_product",
)  # fmt: skip
# Exchange-session details a real future carries that the venue leaves unset (no consumer needs them yet).
NOT_SIMULATED = {"appl_id", "high_limit_price", "low_limit_price", "max_price_variation", "inst_attrib_value",
                 "market_segment_id", "underlying_product"}  # fmt: skip


def _is_set(value: object) -> bool:
    return value not in (None, "", 0, UNDEF_PRICE, 2**31 - 1, 2**32 - 1, 2**64 - 1, 255, 127, 32767, 65535, "\x00")
