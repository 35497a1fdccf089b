"""ChainBook: routing frames to markets (underlying futures shared by markets), event-time snapshot boundaries."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from databento_dbn import StatType

from hydra_daemon.config import MarketConfig
from hydra_daemon.databento.decode import MarketFrame
from hydra_daemon.options.book import ChainBook, is_underlying, stream_parents

S = 1_000_000_000
T0 = pd.Timestamp("2026-11-26T15:00:00Z").value  # a multiple of 60 s
EXPIRY = pd.Timestamp("2027-02-12T17:00:00Z")
HE = MarketConfig("HE", "HE", "HE", "054642")
CL = MarketConfig("CL", "CL", "LO", "067651")
CL_WEEKLY = MarketConfig("CLW", "CL", "LO1", "067651")


def index(ts: list[int]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(ts, unit="ns", utc=True), name="ts_recv")


def definitions(
    ts: int, rows: list[tuple[int, str, str, float, int]], expirations: list[int] | None = None
) -> pd.DataFrame:
    """rows: (instrument_id, raw_symbol, class, strike, underlying_id); each expiring at EXPIRY unless `expirations`
    (ns) say otherwise."""
    expiration = [EXPIRY] * len(rows) if expirations is None else pd.to_datetime(expirations, unit="ns", utc=True)
    return pd.DataFrame(
        {
            "instrument_id": np.array([r[0] for r in rows], dtype=np.uint32),
            "raw_symbol": [r[1] for r in rows],
            "instrument_class": [r[2] for r in rows],
            "expiration": expiration,
            "strike_price": [r[3] for r in rows],
            "underlying": [""] * len(rows),
            "underlying_id": np.array([r[4] for r in rows], dtype=np.uint32),
            "min_price_increment": [0.01] * len(rows),
            "security_update_action": ["A"] * len(rows),
        },
        index=index([ts] * len(rows)),
    )


def quotes(rows: list[tuple[int, int, float, float]]) -> pd.DataFrame:
    """rows: (ts_recv, instrument_id, bid, ask)."""
    return pd.DataFrame(
        {
            "instrument_id": np.array([r[1] for r in rows], dtype=np.uint32),
            "bid_px_00": [r[2] for r in rows],
            "ask_px_00": [r[3] for r in rows],
            "bid_sz_00": np.full(len(rows), 5, dtype=np.uint32),
            "ask_sz_00": np.full(len(rows), 5, dtype=np.uint32),
        },
        index=index([r[0] for r in rows]),
    )


def test_parents_route_options_to_markets_and_futures_to_underlying_labels() -> None:
    parents = stream_parents([HE, CL, CL_WEEKLY])
    assert parents == {
        "HE.OPT": "HE",
        "LO.OPT": "CL",
        "LO1.OPT": "CLW",
        "HE.FUT": "HE.FUT",
        "CL.FUT": "CL.FUT",
    }
    assert [is_underlying(label) for label in ("HE", "CL.FUT")] == [False, True]
    with pytest.raises(ValueError, match="'CL' and 'LO2' both use options_root 'LO'"):
        stream_parents([CL, MarketConfig("LO2", "CL", "LO", "067651")])


def test_underlying_quotes_feed_every_market_on_that_root() -> None:
    book = ChainBook([CL, CL_WEEKLY], 60 * S)
    book.ingest(
        [
            MarketFrame("CL.FUT", "definition", definitions(T0, [(1, "CLG7", "F", math.nan, 0)])),
            MarketFrame("CL", "definition", definitions(T0, [(10, "LOG7 C7000", "C", 70.0, 1)])),
            MarketFrame("CLW", "definition", definitions(T0, [(20, "LO1G7 P7000", "P", 70.0, 1)])),
            MarketFrame("CL.FUT", "mbp-1", quotes([(T0 + 1, 1, 69.99, 70.01)])),
        ]
    )
    snapshots = {item.market: item.snapshot.frame for item in book.close()}
    assert list(snapshots["CL"]["raw_symbol"]) == ["LOG7 C7000"]
    assert list(snapshots["CLW"]["raw_symbol"]) == ["LO1G7 P7000"]
    assert snapshots["CL"]["underlying_price"].item() == snapshots["CLW"]["underlying_price"].item() == 70.0
    assert book.last_event_ns == T0 + 1


def test_snapshots_at_each_crossed_boundary_hold_only_earlier_records() -> None:
    book = ChainBook([HE], 60 * S)
    assert book.ingest([MarketFrame("HE", "definition", definitions(T0 + S, [(10, "HEG7 C0900", "C", 90.0, 0)]))]) == []
    taken = book.ingest(
        [
            MarketFrame(
                "HE",
                "mbp-1",
                quotes([(T0 + 2 * S, 10, 1.0, 1.1), (T0 + 60 * S, 10, 2.0, 2.1), (T0 + 500 * S, 10, 3.0, 3.1)]),
            )
        ]
    )
    assert [item.snapshot.at.value for item in taken] == [T0 + 60 * S, T0 + 120 * S]
    assert [item.snapshot.frame["bid"].item() for item in taken] == [1.0, 2.0]
    (closing,) = book.close()
    assert closing.snapshot.at.value == T0 + 500 * S and closing.snapshot.frame["bid"].item() == 3.0
    assert book.close() == []  # once per last record


def test_records_are_merged_across_frames_in_time_order() -> None:
    book = ChainBook([HE], 60 * S)
    book.ingest([MarketFrame("HE", "definition", definitions(T0, [(10, "HEG7 C0900", "C", 90.0, 0)]))])
    oi = pd.DataFrame(
        {
            "instrument_id": np.array([10], dtype=np.uint32),
            "stat_type": np.array([int(StatType.OPEN_INTEREST)], dtype=np.uint16),
            "quantity": np.array([77], dtype=np.int64),
            "update_action": np.array([1], dtype=np.uint8),
        },
        index=index([T0 + 61 * S]),
    )
    taken = book.ingest(
        [
            MarketFrame("HE", "statistics", oi),
            MarketFrame("HE", "mbp-1", quotes([(T0 + 30 * S, 10, 1.0, 1.1)])),
            MarketFrame("XX", "mbp-1", quotes([(T0 + 31 * S, 10, 9.0, 9.1)])),  # not a configured label: ignored
        ]
    )
    (snapshot,) = taken
    assert snapshot.snapshot.at.value == T0 + 60 * S
    row = snapshot.snapshot.frame.iloc[0]
    assert row.bid == 1.0 and math.isnan(row.open_interest)
    assert book.close()[0].snapshot.frame["open_interest"].item() == 77


def test_records_that_are_not_live_move_the_schedule_without_snapshots() -> None:
    book = ChainBook([HE], 60 * S)
    book.ingest([MarketFrame("HE", "mbp-1", quotes([(T0 + 10 * S, 10, 1.0, 1.1)]))])
    restored = [
        MarketFrame("HE", "definition", definitions(T0, [(10, "HEG7 C0900", "C", 90.0, 0)])),
        MarketFrame("HE", "mbp-1", quotes([(T0 + 200 * S, 10, 2.0, 2.1)])),
    ]
    assert book.ingest(restored, snapshots=False) == []
    (taken,) = book.ingest([MarketFrame("HE", "mbp-1", quotes([(T0 + 250 * S, 10, 3.0, 3.1)]))])
    assert taken.snapshot.at.value == T0 + 240 * S  # not T0 + 60 s: that chain would hold the record at T0 + 200 s
    assert taken.snapshot.frame["bid"].item() == 2.0


# A daemon running for months: options expire every day (daily and weekly series) and new ones are listed. What the
# book holds, and what each snapshot costs, must not grow with the days that passed (found by a review helper).
DAY = 86_400 * S
FUTURE_ID = 1
STRIKES = 40
FUTURE_QUOTES_PER_DAY = 200


def _run_days(days: int) -> tuple[ChainBook, int]:
    """`days` trading days: each day lists STRIKES calls expiring the next day (a daily series, as CL/ES options
    have), quotes them once and the (long-dated) future FUTURE_QUOTES_PER_DAY times. Returns the book and the rows
    the last day's last snapshot held."""
    book = ChainBook([HE], 60 * S)
    future_definition = definitions(T0, [(FUTURE_ID, "HEZ9", "F", math.nan, 0)], [T0 + 3650 * DAY])
    book.ingest([MarketFrame("HE.FUT", "definition", future_definition)])
    last_rows = 0
    for day in range(days):
        start = T0 + day * DAY
        first = 1000 + day * STRIKES
        listed = [(first + k, f"HE D{day} C{k}", "C", 80.0 + k, FUTURE_ID) for k in range(STRIKES)]
        future = [(start + 2 * S + i * S, FUTURE_ID, 90.0, 90.05) for i in range(FUTURE_QUOTES_PER_DAY)]
        options = [(start + 3 * S + k, first + k, 1.0, 1.1) for k in range(STRIKES)]
        book.ingest(
            [
                MarketFrame("HE", "definition", definitions(start + S, listed, [start + DAY + 3600 * S] * STRIKES)),
                MarketFrame("HE.FUT", "mbp-1", quotes(future)),
                MarketFrame("HE", "mbp-1", quotes(options)),
            ]
        )
        (snapshot,) = book.close()
        last_rows = len(snapshot.snapshot.frame)
    return book, last_rows


def test_expired_options_do_not_accumulate_in_the_chain_book() -> None:
    for days in (5, 60):
        book, live_rows = _run_days(days)
        chain = book.chains["HE"]
        assert live_rows == STRIKES  # only today's series is alive: the snapshot holds it alone
        options = [d for d in chain.definitions.values() if d.instrument_class in ("C", "P")]
        # Bounded by what is alive (today's and tomorrow's series), not by the days that passed.
        assert len(options) <= 2 * STRIKES, f"after {days} days the book holds {len(options)} option definitions"
        assert len(chain.quotes) <= 2 * STRIKES + 1, f"after {days} days the book holds {len(chain.quotes)} quotes"


def test_underlying_mid_history_is_trimmed_to_what_live_options_need() -> None:
    for days in (5, 60):
        book, _ = _run_days(days)
        history = book.chains["HE"].mid_history[FUTURE_ID]
        # The live options were quoted today: a day or two of the future's mids serves every lookup.
        assert len(history.times) <= 2 * FUTURE_QUOTES_PER_DAY, (
            f"after {days} days the future's mid history holds {len(history.times)} entries"
        )
