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
    assert before.resume_starts("ohlcv-1d", SCHEMAS) == {"HE": pd.Timestamp("2026-11-30", tz="UTC").value}
    assert added.resume_starts("ohlcv-1d", SCHEMAS) == {"HE": pd.Timestamp("2026-11-30", tz="UTC").value}
    assert added.resume_starts("definition", SCHEMAS) == {"HE": pd.Timestamp("2020-01-02", tz="UTC").value}  # HE's gap
    assert MarketRecords(store, writer, FUTURES, ["LE"]).resume_starts("ohlcv-1d", SCHEMAS) == {}


def test_each_market_resumes_from_its_own_watermark(store: Store) -> None:
    """One start per schema (the oldest market's) re-filled every other market from there: a market re-added after
    months pulled the others into a Historical re-fill of their months, which the cost guard refuses, recording a
    gap in every market."""
    writer = StreamWriter(store)
    key = ("instrument_id", "open", "high", "low", "close", "volume")
    writer.add(FUTURES, "HE.ohlcv-1d", _bars(["2026-06-01"]), key)  # captured, then removed from the config
    writer.add(FUTURES, "LE.ohlcv-1d", _bars(["2026-06-01", "2026-11-30"]), key)
    writer.add(FUTURES, "LE.definition", _bars(["2026-11-27"]), key)
    writer.flush_all()
    records = MarketRecords(store, writer, FUTURES, ["HE", "LE"])
    assert records.resume_starts("ohlcv-1d", SCHEMAS) == {
        "HE": pd.Timestamp("2026-06-01", tz="UTC").value,
        "LE": pd.Timestamp("2026-11-30", tz="UTC").value,
    }
    assert records.resume_starts("definition", SCHEMAS) == {
        "HE": pd.Timestamp("2026-06-01", tz="UTC").value,  # none stored: from when its own capture began
        "LE": pd.Timestamp("2026-11-27", tz="UTC").value,
    }
