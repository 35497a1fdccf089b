"""Settlement rows from daily bars whose symbol is unknown: the bars are stored, the feature write does not fail."""

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
