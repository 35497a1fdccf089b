"""Chain state and snapshots: values, linking options to futures, quotes held before definitions, ordering."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from databento_dbn import Action, BidAskPair, MBP1Msg, Side, StatMsg, StatType, StatUpdateAction
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_daemon.databento.decode import layout, structured, to_frame
from hydra_daemon.options.chain import (
    ChainEvent,
    ChainState,
    Definition,
    Quote,
    Statistic,
    events_from_frame,
    snapshot_chain,
)
from hydra_daemon.options.implied_vol import black76_implied_vol, year_fraction
from hydra_daemon.sim.black76 import black76_price
from hydra_daemon.sim.config import CRUDE_OIL, MarketConfig
from hydra_daemon.sim.instruments import build_instruments, definition_record

DAY_NS = 86_400 * 10**9
T0 = pd.Timestamp("2026-11-26T15:00:00Z").value
EXPIRY = pd.Timestamp("2027-02-12T17:00:00Z").value
FUTURE_ID = 100


def future_def(ts: int = T0, instrument_id: int = FUTURE_ID, symbol: str = "HEG7") -> Definition:
    return Definition(instrument_id, ts, symbol, "F", EXPIRY, math.nan, "", 0, 0.025)


def option_def(
    instrument_id: int, kind: str, strike: float, ts: int = T0, underlying_id: int = FUTURE_ID
) -> Definition:
    symbol = f"HEG7 {kind}{round(strike * 10):04d}"
    return Definition(instrument_id, ts, symbol, kind, EXPIRY, strike, "HEG7", underlying_id, 0.025)


def quote(instrument_id: int, ts: int, bid: float, ask: float, sizes: tuple[int, int] = (5, 7)) -> Quote:
    return Quote(instrument_id, ts, bid, ask, *sizes)


def oi(instrument_id: int, ts: int, quantity: int) -> Statistic:
    return Statistic(instrument_id, ts, int(StatType.OPEN_INTEREST), quantity)


def test_snapshot_has_the_chain_values() -> None:
    state = ChainState()
    for event in (
        future_def(),
        option_def(1, "C", 90.0),
        option_def(2, "P", 90.0),
        quote(FUTURE_ID, T0 + 1, 89.95, 90.05),
        quote(1, T0 + 2, 4.0, 4.1, (3, 4)),
        oi(1, T0 + 3, 120),
        Statistic(2, T0 + 3, int(StatType.CLEARED_VOLUME), 33),
        Statistic(2, T0 + 3, int(StatType.SETTLEMENT_PRICE), None),
    ):
        state.apply(event)
    snapshot = snapshot_chain(state, T0 + 10)
    frame = snapshot.frame
    assert list(frame.index) == [pd.Timestamp(T0 + 10, tz="UTC")] * 2
    assert frame.index.name == "snapshot_time"
    call, put = frame.iloc[0], frame.iloc[1]
    assert (call.raw_symbol, call.put_call, call.strike) == ("HEG7 C0900", "C", 90.0)
    assert call.expiration == pd.Timestamp(EXPIRY, tz="UTC")
    assert (call.bid, call.ask, call.bid_size, call.ask_size) == (4.0, 4.1, 3, 4)
    assert call.quote_time == pd.Timestamp(T0 + 2, tz="UTC")
    assert call.open_interest == 120 and math.isnan(call.volume)
    assert call.underlying == "HEG7" and call.underlying_price == 90.0 and call.iv_underlying_price == 90.0
    expected, _ = black76_implied_vol(4.05, 90.0, 90.0, year_fraction(EXPIRY, T0 + 2), True)
    assert call.implied_vol == expected and call.iv_status == "ok" and call.quote_flags == ""
    assert math.isnan(put.bid) and pd.isna(put.quote_time) and put.iv_status == "no_quote"
    assert put.volume == 33 and math.isnan(put.open_interest)
    assert snapshot.problems == []


def test_iv_pairs_the_option_quote_with_the_futures_mid_of_its_time() -> None:
    state = ChainState()
    for event in (
        future_def(),
        option_def(1, "C", 90.0),
        quote(FUTURE_ID, T0, 89.0, 89.1),
        quote(1, T0 + 5, 3.0, 3.1),
        quote(FUTURE_ID, T0 + 9, 92.0, 92.1),
    ):
        state.apply(event)
    row = snapshot_chain(state, T0 + 10).frame.iloc[0]
    assert row.underlying_price == 92.05
    assert row.iv_underlying_price == 89.05
    assert row.implied_vol == black76_implied_vol(3.05, 89.05, 90.0, year_fraction(EXPIRY, T0 + 5), True)[0]


def test_quotes_and_statistics_before_definitions_are_held_then_used() -> None:
    state = ChainState()
    state.apply(quote(FUTURE_ID, T0, 89.95, 90.05))
    state.apply(quote(1, T0 + 1, 4.0, 4.1))
    state.apply(oi(1, T0 + 2, 75))
    assert state.undefined_count == 2
    assert snapshot_chain(state, T0 + 3).frame.empty
    state.apply(option_def(1, "C", 90.0, ts=T0 + 4))
    state.apply(future_def(ts=T0 + 5))
    assert state.undefined_count == 0
    row = snapshot_chain(state, T0 + 6).frame.iloc[0]
    assert (row.bid, row.ask, row.open_interest, row.underlying_price) == (4.0, 4.1, 75, 90.0)
    assert row.iv_status == "ok"


def test_held_instruments_are_bounded_and_evictions_counted() -> None:
    state = ChainState(max_undefined=2)
    for instrument_id in (1, 2, 3):
        state.apply(quote(instrument_id, T0 + instrument_id, 1.0, 1.1))
    assert state.undefined_count == 2 and state.evicted_undefined == 1
    assert set(state.quotes) == {2, 3}


def decoded(schema: str, records: list[Any]) -> pd.DataFrame:
    """`records` through the streaming core's decoder, as the pipeline sees them."""
    array = structured(records, layout(schema).record_type)
    return to_frame(array, schema, np.array([""] * len(records), dtype=object))


def test_option_links_to_its_future_by_symbol_across_roots() -> None:
    instruments = build_instruments(MarketConfig(products=(CRUDE_OIL,)))
    future = next(i for i in instruments if i.kind == "F")
    option = next(i for i in instruments if i.underlying is future and i.kind == "P")
    unlinked = definition_record(option, T0, T0)
    unlinked.underlying_id = 0  # a venue that fills only the underlying's symbol
    state = ChainState()
    for event in events_from_frame("definition", decoded("definition", [definition_record(future, T0, T0), unlinked])):
        state.apply(event)
    state.apply(quote(future.instrument_id, T0 + 1, 70.0, 70.02))
    row = snapshot_chain(state, T0 + 2).frame.iloc[0]
    assert row.raw_symbol.startswith("LO") and row.underlying == future.raw_symbol
    assert future.raw_symbol.startswith("CL")
    assert row.underlying_price == pytest.approx(70.01, abs=1e-12)


def test_decoded_frames_become_events_with_decimal_prices() -> None:
    instruments = build_instruments(MarketConfig())
    option = next(i for i in instruments if i.kind == "C")
    assert option.underlying is not None
    (definition,) = events_from_frame("definition", decoded("definition", [definition_record(option, T0, T0)]))
    assert definition == Definition(
        option.instrument_id, T0, option.raw_symbol, "C", option.expiration_ns, option.strike or 0.0,
        option.underlying.raw_symbol, option.underlying.instrument_id, 0.025,
    )  # fmt: skip
    mbp = MBP1Msg(
        1, 7, T0 - 5, 4_000_000_000, 3, Action.ADD, Side.BID, 0, T0, levels=BidAskPair(4_000_000_000, 2**63 - 1, 3, 0)
    )
    (converted,) = events_from_frame("mbp-1", decoded("mbp-1", [mbp]))
    assert isinstance(converted, Quote)
    assert (converted.instrument_id, converted.ts_recv, converted.bid, converted.bid_size) == (7, T0, 4.0, 3)
    assert math.isnan(converted.ask) and converted.ask_size == 0 and not converted.two_sided
    stats = [
        StatMsg(
            publisher_id=1,
            instrument_id=7,
            ts_event=T0,
            ts_recv=T0 + 1,
            ts_ref=T0,
            price=2**63 - 1,
            quantity=quantity,
            stat_type=StatType.OPEN_INTEREST,
            sequence=1,
            update_action=action,
        )
        for quantity, action in ((420, StatUpdateAction.DELETE), (2**63 - 1, StatUpdateAction.NEW))
    ]
    assert events_from_frame("statistics", decoded("statistics", stats)) == [
        Statistic(7, T0 + 1, 9, 420, deleted=True),
        Statistic(7, T0 + 1, 9, None, deleted=False),
    ]
    assert events_from_frame("ohlcv-1d", decoded("mbp-1", [mbp])) == []


def test_deleted_definition_and_statistic_leave_the_chain() -> None:
    state = ChainState()
    for event in (future_def(), option_def(1, "C", 90.0), option_def(2, "P", 90.0), oi(1, T0, 5)):
        state.apply(event)
    state.apply(Definition(**{**option_def(2, "P", 90.0).__dict__, "ts_recv": T0 + 1, "deleted": True}))
    state.apply(Statistic(1, T0 + 1, int(StatType.OPEN_INTEREST), None, deleted=True))
    frame = snapshot_chain(state, T0 + 2).frame
    assert list(frame.instrument_id) == [1] and math.isnan(frame.iloc[0].open_interest)


def test_expired_and_bad_strike_options_are_rejected_and_named() -> None:
    state = ChainState()
    state.apply(future_def())
    state.apply(option_def(1, "C", 0.0))
    state.apply(Definition(2, T0, "HEV6 C0900", "C", T0 - DAY_NS, 90.0, "HEG7", FUTURE_ID, 0.025))
    state.apply(option_def(3, "C", 90.0))
    state.apply(quote(3, T0, 2.0, 1.9))
    snapshot = snapshot_chain(state, T0 + 1)
    assert list(snapshot.frame.instrument_id) == [3]
    assert snapshot.frame.iloc[0].quote_flags == "crossed" and snapshot.frame.iloc[0].iv_status == "invalid_quote"
    wheres = sorted(p.where.split(" at ")[0] for p in snapshot.problems)
    assert wheres == ["HEG7 C0000", "HEG7 C0900", "HEV6 C0900"]


def _stream() -> tuple[list[Definition], list[ChainEvent]]:
    """Two futures walking up, eight options priced at vol 0.3 off their future's mid at quote time."""
    definitions = [future_def(), future_def(ts=T0, instrument_id=101, symbol="HEJ7")]
    options = [option_def(10 + i, "CP"[i % 2], 86.0 + i // 2, underlying_id=100 + i % 2) for i in range(8)]
    definitions += options
    mids = {100: 88.0, 101: 89.0}
    stream: list[ChainEvent] = []
    ts = T0
    for step in range(40):
        ts += 1_000
        slot = step % 10
        if slot < 2:
            mids[100 + slot] += 0.1
            stream.append(quote(100 + slot, ts, mids[100 + slot] - 0.025, mids[100 + slot] + 0.025))
        else:
            option = options[slot - 2]
            years = year_fraction(option.expiration_ns, ts)
            mid = black76_price(
                option.instrument_class == "C", mids[option.underlying_id], option.strike, years, 0, 0.3
            )
            stream.append(quote(option.instrument_id, ts, mid - 0.05, mid + 0.05))
        if step % 7 == 0:
            stream.append(oi(10 + step % 8, ts, 10 * step))
    return definitions, stream


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_interleaving_of_definitions_gives_the_same_chain(data: st.DataObject) -> None:
    definitions, stream = _stream()
    reference = ChainState()
    for event in [*definitions, *stream]:
        reference.apply(event)
    positions = data.draw(st.lists(st.integers(0, len(stream)), min_size=len(definitions), max_size=len(definitions)))
    order = data.draw(st.permutations(definitions))
    merged: list[ChainEvent] = list(stream)
    for definition, position in sorted(zip(order, positions, strict=True), key=lambda p: -p[1]):
        merged.insert(position, definition)
    state = ChainState()
    for event in merged:
        state.apply(event)
    at = stream[-1].ts_recv + 1
    expected = snapshot_chain(reference, at).frame
    assert len(expected) == 8
    assert ((expected.implied_vol - 0.3).abs() < 1e-9).all()
    pd.testing.assert_frame_equal(snapshot_chain(state, at).frame, expected)


def test_history_is_trimmed_to_what_held_option_quotes_need() -> None:
    state = ChainState()
    state.apply(future_def())
    state.apply(option_def(1, "C", 90.0))
    for step in range(10):
        state.apply(quote(FUTURE_ID, T0 + step, 90.0 + step, 90.1 + step))
    state.apply(quote(1, T0 + 5, 1.0, 1.1))
    before = snapshot_chain(state, T0 + 20).frame
    state.forget_stale_history()
    assert state.mid_history[FUTURE_ID].times == [T0 + t for t in range(5, 10)]
    pd.testing.assert_frame_equal(snapshot_chain(state, T0 + 20).frame, before)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_arrival_order_of_distinctly_timed_events_gives_the_same_chain(data: st.DataObject) -> None:
    definitions, stream = _stream()
    reference = ChainState()
    for event in [*definitions, *stream]:
        reference.apply(event)
    state = ChainState()
    for event in data.draw(st.permutations([*definitions, *stream])):
        state.apply(event)
    at = stream[-1].ts_recv + 1
    pd.testing.assert_frame_equal(snapshot_chain(state, at).frame, snapshot_chain(reference, at).frame)
