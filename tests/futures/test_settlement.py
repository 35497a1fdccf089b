"""Settlement rows from daily bars: of unknown symbols (the bars are stored, the feature write does not fail), and
corrected (a revision, available from when it was received)."""

from __future__ import annotations

import pandas as pd
from structlog.testing import capture_logs

from hydra_daemon.databento.decode import MarketFrame
from hydra_daemon.futures.pipeline import SETTLEMENT, FuturesSink
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.symbols import FUTURES
from hydra_daemon.store.writer import StreamWriter

DAY = pd.Timestamp("2026-11-24", tz="UTC")


def _bars(instruments: list[int], symbols: list[str]) -> pd.DataFrame:
    n = len(instruments)
    return pd.DataFrame(
        {
            "instrument_id": instruments,
            "open": [90.0] * n,
            "high": [91.0] * n,
            "low": [89.0] * n,
            "close": [90.5 + i for i in range(n)],
            "volume": [10] * n,
            "symbol": symbols,
        },
        index=pd.DatetimeIndex([DAY] * n, name="ts_event"),
    )


def test_daily_bars_of_unknown_symbols_are_stored_without_settlement_rows(store: Store) -> None:
    sink = FuturesSink(store, StreamWriter(store), ["HE"])
    frame = MarketFrame("HE", "ohlcv-1d", _bars([1, 2, 3], ["", "", "HEZ6"]))
    with capture_logs() as logs:
        assert sink.commit([frame]) == 3
    assert len(store.library(FUTURES).read("HE.ohlcv-1d").data) == 3
    settlement = FeatureStore(store).read_feature("HE", SETTLEMENT)
    assert list(settlement["symbol"]) == ["HEZ6"] and list(settlement["value"]) == [92.5]
    (line,) = [e for e in logs if e["event"] == "settlement_without_symbol"]
    assert line["where"] == [f"instrument_id={i} at {DAY.isoformat()}" for i in (1, 2)]


def test_a_corrected_daily_bar_is_available_from_when_it_was_received_not_from_the_bar_close(store: Store) -> None:
    """A replay, gap fill or backfill brings the day's bar again with another close: a point-in-time read before it
    arrived must still say the first close (found by a review helper: the revision kept the bar end)."""
    sink = FuturesSink(store, StreamWriter(store), ["HE"])
    sink.commit([MarketFrame("HE", "ohlcv-1d", _bars([1], ["HEZ6"]))])  # close 90.5, available at DAY + 1 day
    between = pd.Timestamp.now(tz="UTC")
    corrected = _bars([1], ["HEZ6"]).assign(close=[91.0])
    sink.commit([MarketFrame("HE", "ohlcv-1d", corrected)])
    received = pd.Timestamp.now(tz="UTC")

    features = FeatureStore(store)
    history = features.read_feature("HE", SETTLEMENT).set_index("revision")
    assert history.loc[0, "available_at"] == DAY + pd.Timedelta(days=1)
    assert between < history.loc[1, "available_at"] <= received
    assert list(features.read_feature("HE", SETTLEMENT, at=between)["value"]) == [90.5]
    assert list(features.read_feature("HE", SETTLEMENT, at=received)["value"]) == [91.0]
    sink.commit([MarketFrame("HE", "ohlcv-1d", corrected)])  # a replay of the same bar is no revision
    assert len(features.read_feature("HE", SETTLEMENT)) == 2
