"""docs/READING.md runs: every ```python block, in order, against a store this test builds (STORE and LAKE pointed at
it); the worked backtest trades exactly what the inputs known at each rebalance imply."""

from __future__ import annotations

import contextlib
import gc
import io
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hydra_daemon.cot.calendar import release_time
from hydra_daemon.cot.persist import cot_table
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.lake import export_store_due
from hydra_daemon.store.maintenance import Maintenance, MaintenancePolicy
from hydra_daemon.store.symbols import FUTURES, OPTIONS, chain_symbol, data_symbol
from hydra_daemon.store.writer import StreamWriter

DOC = Path(__file__).resolve().parents[1] / "docs" / "READING.md"
MARKETS = ("HE", "LE", "ZC")
AS_OF = [date(2026, 1, 27) + timedelta(weeks=w) for w in range(9)]  # Tuesdays
SIGNAL = "cot_managed_money_net_pct_oi"
SNAPSHOT_DAY = date(2026, 3, 6)


def _signal(market_index: int, week: int) -> float:
    """Rankings that change every week, so reading next week's value early would change the trades."""
    return float(((week * 7 + market_index * 3) % 5) - 2 + market_index * 0.1)


def _bars(market_index: int) -> pd.DataFrame:
    days = pd.bdate_range("2026-01-19", "2026-03-27", tz="UTC", name="ts_event")
    rng = np.random.default_rng(market_index)
    frames = []
    for number, (symbol, volume) in enumerate(
        ((f"{MARKETS[market_index]}J6", 500), (f"{MARKETS[market_index]}M6", 90))
    ):
        closes = 80 + market_index * 10 + number + np.cumsum(rng.normal(0, 1, len(days)))
        frames.append(
            pd.DataFrame(
                {
                    "instrument_id": np.uint32(100 + number),
                    "close": closes,
                    "volume": np.uint64(volume),
                    "symbol": symbol,
                },
                index=days,
            )
        )
    return pd.concat(frames).sort_index(kind="stable")


def _chain(at: pd.Timestamp) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "instrument_id": [1, 2],
            "raw_symbol": ["HEJ6 C0900", "HEJ6 P0900"],
            "strike": [90.0, 90.0],
            "put_call": ["C", "P"],
            "bid": [2.0, 1.5],
            "ask": [2.1, 1.6],
            "implied_vol": [0.3, 0.31],
        }
    )
    frame.index = pd.DatetimeIndex([at, at], name="snapshot_time")
    return frame


def _build(uri: str, lake_dir: Path) -> None:
    with Store.open(uri, writer=True) as store:
        now = {"ns": pd.Timestamp(SNAPSHOT_DAY, tz="UTC").value}
        maintenance = Maintenance(store, MaintenancePolicy(), clock=lambda: now["ns"])
        maintenance.run_once()  # the daemon runs through the day (a first run takes no snapshot of the day before it)
        writer = StreamWriter(store)
        for i, market in enumerate(MARKETS):
            writer.add(FUTURES, data_symbol(market, "ohlcv-1d"), _bars(i), key_columns=["instrument_id"])
        writer.add(OPTIONS, chain_symbol("HE"), _chain(pd.Timestamp("2026-03-06 20:00", tz="UTC")), ["instrument_id"])
        writer.flush_all()
        features = FeatureStore(store)
        released = pd.Series([release_time(d) for d in AS_OF])
        for i, market in enumerate(MARKETS):
            values = [_signal(i, w) for w in range(len(AS_OF))]
            frame = pd.DataFrame({"as_of": pd.to_datetime(AS_OF).tz_localize("UTC"), "value": values})
            features.write_feature(market, SIGNAL, frame.assign(available_at=released.to_numpy()))
        at = pd.Timestamp("2026-03-06 20:00", tz="UTC")
        iv = pd.DataFrame({"as_of": [at], "available_at": [at], "expiration": [pd.Timestamp("2026-04-14", tz="UTC")]})
        features.write_feature("HE", "atm_iv", iv.assign(value=0.3))
        cot = cot_table(store, "HE")
        for w, as_of in enumerate(AS_OF[:6]):
            report = pd.DataFrame({"as_of": [pd.Timestamp(as_of, tz="UTC")], "open_interest_all": [1000.0 + w]})
            report["m_money_long_all"] = 100.0 + w
            released_at = pd.Timestamp(release_time(as_of))
            cot.record(
                report,
                value_columns=["open_interest_all", "m_money_long_all"],
                available_at=released_at,
                ingested_at=released_at,
            )
        now["ns"] = (pd.Timestamp(SNAPSHOT_DAY + timedelta(days=1), tz="UTC") + pd.Timedelta(minutes=1)).value
        maintenance.run_once()
        correction = pd.DataFrame({"as_of": [pd.Timestamp(AS_OF[5], tz="UTC")], "open_interest_all": [9999.0]})
        published = pd.Timestamp("2026-03-10 15:00", tz="UTC")
        cot.record(
            correction.assign(m_money_long_all=105.0),
            value_columns=["open_interest_all", "m_money_long_all"],
            available_at=published,
            ingested_at=published,
        )
        export_store_due(store, lake_dir, date(2026, 3, 31))


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _expected_trades() -> list[tuple[pd.Timestamp, str, int]]:
    """(rebalance, market, side) from the synthetic inputs: the newest signal released by each rebalance."""
    expected = []
    released = [pd.Timestamp(release_time(d)) for d in AS_OF]
    for at in pd.date_range("2026-02-06 21:00", "2026-03-13 21:00", freq="7D", tz="UTC"):
        week = max(w for w, r in enumerate(released) if r <= at)
        signal = pd.Series({m: _signal(i, week) for i, m in enumerate(MARKETS)})
        expected += [(at, signal.idxmin(), 1), (at, signal.idxmax(), -1)]
    return expected


@pytest.fixture
def namespace(tmp_path: Path) -> dict[str, Any]:
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=1GB"
    _build(uri, tmp_path / "lake")
    gc.collect()
    code = "\n".join(_blocks())
    code = code.replace('"lmdb:///var/lib/hydra-daemon/arctic"', repr(uri))
    code = code.replace('"/var/lib/hydra-daemon/lake"', repr(str(tmp_path / "lake")))
    scope: dict[str, Any] = {"__name__": "reading_doc"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, str(DOC), "exec"), scope)
    return scope


def test_the_reading_guide_runs_and_its_backtest_trades_only_on_what_was_known(namespace: dict[str, Any]) -> None:
    assert len(_blocks()) >= 6
    assert namespace["markets"] == list(MARKETS)
    trades = namespace["trades"]
    got = list(zip(trades["at"], trades["market"], trades["side"], strict=True))
    assert got == _expected_trades()
    assert set(trades["symbol"]) == {f"{m}J6" for m in MARKETS}  # the most traded contract of each market
    first = trades.iloc[0]
    bars = _bars(MARKETS.index(first["market"]))
    closes = bars[bars["symbol"] == first["symbol"]]["close"]
    entry = closes[closes.index <= first["at"] - pd.Timedelta(days=1)].iloc[-1]
    exit_ = closes[closes.index <= first["at"] + pd.Timedelta(days=6)].iloc[-1]
    assert first["pnl"] == pytest.approx(first["side"] * (exit_ - entry))
    assert namespace["signals"].loc["HE", "atm_iv"] == 0.3 and np.isnan(namespace["signals"].loc["LE", "atm_iv"])
    assert namespace["held_then"]["revision"].tolist() == [0] * 6  # the correction came after the snapshot
    assert namespace["cot_pit"]["as_of"].dt.date.tolist()[-1] == AS_OF[5]
    assert namespace["panel"]["market"].to_list() == list(MARKETS)
