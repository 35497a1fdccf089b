"""Bulk chain updates: `ChainState.apply_quotes` and `ChainBook.ingest` of large frames give exactly the state and
the snapshots of applying every record one by one, in stream order."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_daemon.config import MarketConfig
from hydra_daemon.databento.decode import MarketFrame
from hydra_daemon.options.book import ChainBook, MarketSnapshot
from hydra_daemon.options.chain import ChainState, Definition, Quote, QuoteBatch

S = 1_000_000_000
T0 = pd.Timestamp("2026-11-26T15:00:00Z").value
EXPIRY = pd.Timestamp("2027-02-12T17:00:00Z").value
FUTURE_ID = 100
OPTIONS = {1: ("C", 90.0), 2: ("P", 90.0), 3: ("C", 95.0)}
UNDEFINED_ID = 7
IDS = [FUTURE_ID, *OPTIONS, UNDEFINED_ID]
HE = MarketConfig("HE", "HE", "HE", "054642")


def definitions(ts: int = T0) -> list[Definition]:
    future = Definition(FUTURE_ID, ts, "HEG7", "F", EXPIRY, math.nan, "", 0, 0.025)
    options = [
        Definition(iid, ts, f"HEG7 {kind}{round(strike * 10):04d}", kind, EXPIRY, strike, "HEG7", FUTURE_ID, 0.025)
        for iid, (kind, strike) in OPTIONS.items()
    ]
    return [future, *options]


quote_rows = st.lists(
    st.tuples(
        st.sampled_from(IDS),
        st.integers(0, 40),  # ts offset in seconds: ties and disorder happen
        st.sampled_from([1.0, 1.5, 2.0, 90.0, 90.5, math.nan]),
        st.sampled_from([1.2, 1.4, 2.5, 90.25, 91.0, math.nan]),
    ),
    min_size=1,
    max_size=60,
)


def _batch(rows: list[tuple[int, int, float, float]]) -> QuoteBatch:
    return QuoteBatch(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([T0 + r[1] * S for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows]),
        np.array([r[3] for r in rows]),
        np.full(len(rows), 5, dtype=np.int64),
        np.arange(len(rows), dtype=np.int64),  # ask size tells rows apart
    )


def _state(state: ChainState) -> tuple[object, ...]:
    histories = {
        iid: (h.times, [m if not math.isnan(m) else None for m in h.mids]) for iid, h in state.mid_history.items()
    }
    quotes = {iid: (q.ts_recv, q.ask_size) for iid, q in state.quotes.items()}
    return quotes, histories, state.undefined_count


@settings(max_examples=150, deadline=None)
@given(rows=quote_rows, defined_first=st.booleans())
def test_apply_quotes_equals_applying_each_quote_in_order(
    rows: list[tuple[int, int, float, float]], defined_first: bool
) -> None:
    one_by_one, bulk = ChainState(), ChainState()
    if defined_first:
        for definition in definitions():
            one_by_one.apply(definition)
            bulk.apply(definition)
    batch = _batch(rows)
    for row in range(len(batch)):
        one_by_one.apply(batch.quote(row))
    bulk.apply_quotes(batch)
    assert _state(bulk) == _state(one_by_one)


def _quote_frame(quotes: list[Quote]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "instrument_id": np.array([q.instrument_id for q in quotes], dtype=np.uint32),
            "bid_px_00": [q.bid for q in quotes],
            "ask_px_00": [q.ask for q in quotes],
            "bid_sz_00": np.array([q.bid_size for q in quotes], dtype=np.uint32),
            "ask_sz_00": np.array([q.ask_size for q in quotes], dtype=np.uint32),
        },
        index=pd.DatetimeIndex(pd.to_datetime([q.ts_recv for q in quotes], unit="ns", utc=True), name="ts_recv"),
    )


def _definition_frame(items: list[Definition]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "instrument_id": np.array([d.instrument_id for d in items], dtype=np.uint32),
            "raw_symbol": [d.raw_symbol for d in items],
            "instrument_class": [d.instrument_class for d in items],
            "expiration": pd.to_datetime([d.expiration_ns for d in items], unit="ns", utc=True),
            "strike_price": [d.strike for d in items],
            "underlying": [d.underlying for d in items],
            "underlying_id": np.array([d.underlying_id for d in items], dtype=np.uint32),
            "min_price_increment": [d.min_price_increment for d in items],
            "security_update_action": ["A"] * len(items),
        },
        index=pd.DatetimeIndex(pd.to_datetime([d.ts_recv for d in items], unit="ns", utc=True), name="ts_recv"),
    )


def _snapshots(taken: list[MarketSnapshot]) -> list[tuple[int, pd.DataFrame]]:
    return [(item.snapshot.at.value, item.snapshot.frame) for item in taken]


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.integers(0, 25), min_size=2, max_size=80), cuts=st.sets(st.integers(1, 79), max_size=6))
def test_ingesting_large_batches_gives_the_snapshots_of_record_by_record_ingestion(
    steps: list[int], cuts: set[int]
) -> None:
    times = T0 + np.cumsum(steps) * S // 2  # time order, with ties; boundaries every 10 s
    rng = np.random.default_rng(len(steps))
    quotes = [
        Quote(int(rng.choice(IDS)), int(ts), 90.0 + i % 3, 90.5 + i % 3, 5, i) for i, ts in enumerate(times.tolist())
    ]
    head = MarketFrame("HE", "definition", _definition_frame(definitions(T0 - S)))
    single, batched = ChainBook([HE], 10 * S), ChainBook([HE], 10 * S)
    expected = single.ingest([head])
    for item in quotes:
        expected += single.ingest([MarketFrame("HE", "mbp-1", _quote_frame([item]))])
    edges = [0, *sorted(c for c in cuts if c < len(quotes)), len(quotes)]
    got = batched.ingest([head])
    for a, b in itertools.pairwise(edges):
        if a < b:
            got += batched.ingest([MarketFrame("HE", "mbp-1", _quote_frame(quotes[a:b]))])
    assert [at for at, _ in _snapshots(got)] == [at for at, _ in _snapshots(expected)]
    for (_, ours), (_, theirs) in zip(_snapshots(got), _snapshots(expected), strict=True):
        pd.testing.assert_frame_equal(ours, theirs)
    pd.testing.assert_frame_equal(batched.close()[0].snapshot.frame, single.close()[0].snapshot.frame)
