"""The chain book of a daemon that runs for months: options expire every day (daily/weekly series) and new ones are
listed. What the book holds, and what each snapshot costs, must not grow with the number of days that passed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hydra_daemon.config import MarketConfig
from hydra_daemon.databento.decode import MarketFrame
from hydra_daemon.options.book import ChainBook

S = 1_000_000_000
DAY = 86_400 * S
T0 = pd.Timestamp("2026-11-02T15:00:00Z").value  # a Monday, a multiple of 60 s
HE = MarketConfig("HE", "HE", "HE", "054642")
FUTURE_ID = 1
STRIKES = 40
FUTURE_QUOTES_PER_DAY = 200


def _index(ts: list[int]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(ts, unit="ns", utc=True), name="ts_recv")


def _definitions(ts: int, rows: list[tuple[int, str, str, float, int, int]]) -> pd.DataFrame:
    """rows: (instrument_id, raw_symbol, class, strike, underlying_id, expiration ns)."""
    return pd.DataFrame(
        {
            "instrument_id": np.array([r[0] for r in rows], dtype=np.uint32),
            "raw_symbol": [r[1] for r in rows],
            "instrument_class": [r[2] for r in rows],
            "expiration": pd.to_datetime([r[5] for r in rows], unit="ns", utc=True),
            "strike_price": [r[3] for r in rows],
            "underlying": [""] * len(rows),
            "underlying_id": np.array([r[4] for r in rows], dtype=np.uint32),
            "min_price_increment": [0.025] * len(rows),
            "security_update_action": ["A"] * len(rows),
        },
        index=_index([ts] * len(rows)),
    )


def _quotes(rows: list[tuple[int, int, float, float]]) -> pd.DataFrame:
    """rows: (ts_recv, instrument_id, bid, ask)."""
    return pd.DataFrame(
        {
            "instrument_id": np.array([r[1] for r in rows], dtype=np.uint32),
            "bid_px_00": [r[2] for r in rows],
            "ask_px_00": [r[3] for r in rows],
            "bid_sz_00": np.full(len(rows), 5, dtype=np.uint32),
            "ask_sz_00": np.full(len(rows), 5, dtype=np.uint32),
        },
        index=_index([r[0] for r in rows]),
    )


def _run_days(days: int) -> tuple[ChainBook, int]:
    """`days` trading days: each day lists STRIKES calls expiring the next day (a daily series, as CL/ES options
    have), quotes them once and the (long-dated) future FUTURE_QUOTES_PER_DAY times. Returns the book and the rows
    the last day's last snapshot held."""
    book = ChainBook([HE], 60 * S)
    far = T0 + 3650 * DAY
    book.ingest([MarketFrame("HE.FUT", "definition", _definitions(T0, [(FUTURE_ID, "HEZ9", "F", math.nan, 0, far)]))])
    last_rows = 0
    for day in range(days):
        start = T0 + day * DAY
        first = 1000 + day * STRIKES
        listed = [
            (first + k, f"HE D{day} C{k}", "C", 80.0 + k, FUTURE_ID, start + DAY + 3600 * S) for k in range(STRIKES)
        ]
        future = [(start + 2 * S + i * S, FUTURE_ID, 90.0, 90.05) for i in range(FUTURE_QUOTES_PER_DAY)]
        options = [(start + 3 * S + k, first + k, 1.0, 1.1) for k in range(STRIKES)]
        book.ingest(
            [
                MarketFrame("HE", "definition", _definitions(start + S, listed)),
                MarketFrame("HE.FUT", "mbp-1", _quotes(future)),
                MarketFrame("HE", "mbp-1", _quotes(options)),
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
