"""Where a session resumes when a market was just added to the configuration."""

from __future__ import annotations

import pandas as pd

from hydra_daemon.capture.commit import MarketRecords
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.symbols import FUTURES
from hydra_daemon.store.writer import StreamWriter

SCHEMAS = ("ohlcv-1d", "definition")


def _bars(days: list[str]) -> pd.DataFrame:
    index = pd.DatetimeIndex([pd.Timestamp(d, tz="UTC") for d in days], name="ts_event")
    return pd.DataFrame({"instrument_id": 1, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1}, index)


def test_a_market_with_nothing_stored_does_not_pull_the_replay_back_to_the_start_of_capture(store: Store) -> None:
    writer = StreamWriter(store)
    key = ("instrument_id", "open", "high", "low", "close", "volume")
    writer.add(FUTURES, "HE.ohlcv-1d", _bars(["2020-01-02", "2026-11-30"]), key)  # a backfill, then capture
    writer.flush_all()
    before = MarketRecords(store, writer, FUTURES, ["HE"])
    added = MarketRecords(store, writer, FUTURES, ["HE", "LE"])  # LE just added: nothing of it is stored
    assert before.resume_ns("ohlcv-1d", SCHEMAS) == pd.Timestamp("2026-11-30", tz="UTC").value
    assert added.resume_ns("ohlcv-1d", SCHEMAS) == pd.Timestamp("2026-11-30", tz="UTC").value
    assert added.resume_ns("definition", SCHEMAS) == pd.Timestamp("2020-01-02", tz="UTC").value  # HE's own gap
    assert MarketRecords(store, writer, FUTURES, ["LE"]).resume_ns("ohlcv-1d", SCHEMAS) is None
