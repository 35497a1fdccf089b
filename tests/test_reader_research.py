"""Reader research methods: what the store holds, columns=, cross-section panels, polars output, reading the store as
it was at the end of a UTC day (the daemon's daily snapshot), and silence unless asked."""

from __future__ import annotations

import gc
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from hydra_daemon.cot.persist import cot_table
from hydra_daemon.reader import Reader, ReaderArgumentError
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.maintenance import Maintenance, MaintenancePolicy
from hydra_daemon.store.symbols import FUTURES, OPTIONS, chain_symbol, data_symbol
from hydra_daemon.store.writer import StreamWriter

WEEKS = [pd.Timestamp("2026-01-06", tz="UTC") + pd.Timedelta(weeks=w) for w in range(4)]
RELEASE = pd.Timedelta(days=3, hours=20, minutes=30)
DAY1 = pd.Timestamp("2026-02-02", tz="UTC")  # the store is snapshotted at the end of this UTC day


def _cot(store: Store, market: str, weeks: list[pd.Timestamp], base: float) -> None:
    table = cot_table(store, market)  # with the symbol's lock, as the daemon writes (maintenance knows it)
    for w, as_of in enumerate(weeks):
        rows = pd.DataFrame({"as_of": [as_of], "open_interest_all": [base + w], "m_money_long": [10.0 * w]})
        released = as_of + RELEASE
        values = ["open_interest_all", "m_money_long"]
        table.record(rows, value_columns=values, available_at=released, ingested_at=released)


def _atm_iv(store: Store, market: str, at: pd.Timestamp, front: float) -> None:
    expirations = pd.to_datetime(["2026-03-13", "2026-04-14"]).tz_localize("UTC")
    frame = pd.DataFrame(
        {"as_of": [at] * 2, "available_at": [at] * 2, "expiration": expirations, "value": [front, 0.5]}
    )
    FeatureStore(store).write_feature(market, "atm_iv", frame, ingested_at=at)


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """HE and LE COT, HE options features (two expirations) and bars; a daily snapshot at the end of DAY1, after
    which more is written."""
    uri = f"lmdb://{tmp_path_factory.mktemp('research') / 'arctic'}?map_size=1GB"
    with Store.open(uri, writer=True) as store:
        now = {"ns": (DAY1 + pd.Timedelta(hours=12)).value}
        maintenance = Maintenance(store, MaintenancePolicy(), clock=lambda: now["ns"])
        maintenance.run_once()  # the daemon runs through DAY1 (a first run takes no snapshot of the day before it)
        _cot(store, "HE", WEEKS[:2], 100.0)
        _cot(store, "LE", WEEKS[:3], 200.0)
        _atm_iv(store, "HE", DAY1 + pd.Timedelta(hours=15), 0.30)
        index = pd.date_range(DAY1, periods=3, freq="D", tz="UTC", name="ts_event")
        bars = pd.DataFrame({"close": [80.0, 81.0, 82.0], "volume": np.array([1, 2, 3], dtype="int64")}, index=index)
        writer = StreamWriter(store)
        writer.add(FUTURES, data_symbol("HE", "ohlcv-1d"), bars, key_columns=["close"])
        chain = pd.DataFrame({"instrument_id": [1, 2], "implied_vol": [0.3, 0.31]})
        chain.index = pd.DatetimeIndex([DAY1 + pd.Timedelta(hours=15)] * 2, name="snapshot_time")
        writer.add(OPTIONS, chain_symbol("HE"), chain, key_columns=["instrument_id"])
        writer.flush_all()
        after_midnight = DAY1 + pd.Timedelta(days=1, seconds=5)  # before the run that takes the daily snapshot
        _atm_iv(store, "HE", after_midnight, 0.33)
        revision = pd.DataFrame({"as_of": [WEEKS[0]], "open_interest_all": [150.0], "m_money_long": [0.0]})
        cot_table(store, "LE").record(
            revision,
            value_columns=["open_interest_all", "m_money_long"],
            available_at=after_midnight,
            ingested_at=after_midnight,
        )
        writer.add(
            OPTIONS,
            chain_symbol("HE"),
            chain.set_axis(pd.DatetimeIndex([after_midnight] * 2, name="snapshot_time")),
            ["instrument_id"],
        )
        writer.flush_all()
        now["ns"] = (DAY1 + pd.Timedelta(days=1, minutes=1)).value
        maintenance.run_once()
        _atm_iv(store, "HE", DAY1 + pd.Timedelta(days=1, hours=15), 0.35)  # after the snapshot
        _cot(store, "HE", WEEKS[2:3], 102.0)
    gc.collect()
    return uri


AT = datetime(2026, 2, 4, tzinfo=UTC)


def test_the_reader_lists_markets_schemas_and_features(uri: str) -> None:
    with Reader(uri) as reader:
        assert reader.markets() == ["HE", "LE"]
        assert reader.schemas("HE") == {"futures": ["ohlcv-1d"], "options": ["chain"], "cot": ["cot"]}
        assert reader.schemas("LE") == {"cot": ["cot"]}
        assert reader.features("HE") == ["atm_iv"]
        assert reader.features("LE") == []


def test_panels_hold_one_row_per_market_known_at_the_time(uri: str) -> None:
    with Reader(uri) as reader:
        cot = reader.cot_panel(["HE", "LE"], AT)
        assert cot.index.tolist() == ["HE", "LE"]
        assert cot["as_of"].tolist() == [WEEKS[2], WEEKS[2]]  # the newest report each market had released by AT
        assert cot["open_interest_all"].tolist() == [102.0, 202.0]
        assert reader.cot_panel(["HE", "ZC"], AT).loc["ZC"].isna().all()  # a market without COT: missing values
        with pytest.raises(LookupError, match=r"ZC\.cot"):
            reader.cot_panel(["ZC"], AT)
        before_le_week3 = WEEKS[2] + RELEASE - pd.Timedelta(1, "ns")
        assert reader.cot_panel(["LE"], before_le_week3)["open_interest_all"].tolist() == [201.0]
        assert reader.cot_panel(["HE"], AT, columns=["as_of", "m_money_long"]).columns.tolist() == [
            "as_of",
            "m_money_long",
        ]
        panel = reader.feature_panel(["HE", "LE"], ["atm_iv"], AT)
        assert panel.index.tolist() == ["HE", "LE"] and panel.columns.tolist() == ["atm_iv"]
        assert panel.loc["HE", "atm_iv"] == 0.35  # the newest snapshot's front expiration
        assert np.isnan(panel.loc["LE", "atm_iv"])  # LE has no options features
        day1 = reader.feature_panel(["HE"], ["atm_iv"], datetime(2026, 2, 2, 23, tzinfo=UTC))
        assert day1.loc["HE", "atm_iv"] == 0.30  # the 0.35 of Feb 3 was not available yet
        assert reader.feature_panel(["HE"], ["atm_iv"], datetime(2026, 2, 2, tzinfo=UTC)).isna().all().all()
        with pytest.raises(LookupError, match=r"HE\.nope"):
            reader.feature_panel(["HE", "LE"], ["nope"], AT)
        twice = reader.feature_panel(["HE", "LE", "HE"], ["atm_iv"], AT)  # a universe listing a market twice
        assert twice.index.tolist() == ["HE", "LE", "HE"] and twice["atm_iv"].tolist()[::2] == [0.35, 0.35]
        assert reader.cot_panel(["HE", "LE", "HE"], AT)["open_interest_all"].tolist() == [102.0, 202.0, 102.0]


def test_columns_select_on_every_read(uri: str) -> None:
    with Reader(uri) as reader:
        bars = reader.futures_bars("HE", DAY1, DAY1 + pd.Timedelta(days=5), columns=["close"])
        assert bars.columns.tolist() == ["close"] and bars.index.tz is not None
        assert reader.options_chain("HE", AT, columns=["implied_vol"]).columns.tolist() == ["implied_vol"]
        chain = reader.records("options", "HE", "chain", DAY1, DAY1 + pd.Timedelta(days=1), columns=["instrument_id"])
        assert chain["instrument_id"].tolist() == [1, 2] and chain.index.name == "snapshot_time"
        assert reader.cot("HE", AT, columns=["as_of", "open_interest_all"]).shape == (3, 2)
        history = reader.cot_history("HE", start=WEEKS[1], columns=["as_of", "available_at", "revision"])
        assert history["as_of"].tolist() == [WEEKS[1], WEEKS[2]]
        assert reader.feature("HE", "atm_iv", AT, columns=["expiration", "value"]).shape == (6, 2)
        with pytest.raises(ValueError, match=r"unknown columns \['nope'\]"):
            reader.cot("HE", AT, columns=["nope"])
        for read in (  # ArcticDB leaves an unknown column out silently: a typo must not read as "no data"
            lambda columns: reader.futures_bars("HE", DAY1, DAY1 + pd.Timedelta(days=5), columns=columns),
            lambda columns: reader.records(
                "options", "HE", "chain", DAY1, DAY1 + pd.Timedelta(days=1), columns=columns
            ),
            lambda columns: reader.options_chain("HE", AT, columns=columns),
        ):
            with pytest.raises(ReaderArgumentError, match=r"unknown columns \['nope'\]"):
                read(["nope"])
            with pytest.raises(ReaderArgumentError, match="columns must be a list of names"):
                read("close")


def test_polars_output_keeps_utc_and_the_index_as_a_column(uri: str) -> None:
    with Reader(uri, output="polars") as reader:
        bars = reader.futures_bars("HE", DAY1, DAY1 + pd.Timedelta(days=5))
        assert isinstance(bars, pl.DataFrame)
        assert bars.schema["ts_event"] == pl.Datetime("ns", "UTC") and bars["close"].to_list() == [80.0, 81.0, 82.0]
        panel = reader.feature_panel(["HE", "LE"], ["atm_iv"], AT)
        assert panel["market"].to_list() == ["HE", "LE"]
        assert reader.cot("HE", AT).schema["available_at"] == pl.Datetime("ns", "UTC")


def test_as_of_snapshot_reads_the_store_as_it_was_at_the_end_of_a_utc_day(uri: str) -> None:
    late = datetime(2026, 6, 1, tzinfo=UTC)  # point-in-time still applies: late enough to see everything stored
    with Reader(uri, as_of_snapshot=date(2026, 2, 2)) as then, Reader(uri) as now:
        # the snapshot also holds what was written after midnight, before the run that took it: not at day's end
        assert then.feature_panel(["HE"], ["atm_iv"], late).loc["HE", "atm_iv"] == 0.30
        assert then.feature("HE", "atm_iv", late)["value"].tolist() == [0.30, 0.5]
        assert then.options_chain("HE", late).index.unique().tolist() == [DAY1 + pd.Timedelta(hours=15)]
        chains = then.records("options", "HE", "chain", DAY1, late).index.unique().tolist()
        assert chains == [DAY1 + pd.Timedelta(hours=15)]
        assert len(now.records("options", "HE", "chain", DAY1, late).index.unique()) == 2
        assert then.cot("LE", late)["open_interest_all"].tolist() == [200.0, 201.0, 202.0]  # not week 0's revision
        assert now.cot("LE", late)["open_interest_all"].tolist() == [150.0, 201.0, 202.0]
        assert then.cot_history("LE")["revision"].tolist() == [0, 0, 0]
        assert now.cot_history("LE")["revision"].tolist() == [0, 1, 0, 0]
        assert now.feature_panel(["HE"], ["atm_iv"], late).loc["HE", "atm_iv"] == 0.35
        assert then.cot("HE", late)["as_of"].tolist() == WEEKS[:2]
        assert now.cot("HE", late)["as_of"].tolist() == WEEKS[:3]
        assert then.cot("HE", late, start=WEEKS[1])["as_of"].tolist() == WEEKS[1:2]  # a window at the snapshot
        for _ in range(2):  # the second call picks from the histories the first one kept
            assert then.cot_panel(["HE"], late).loc["HE", "as_of"] == WEEKS[1]
            assert now.cot_panel(["HE"], late).loc["HE", "as_of"] == WEEKS[2]
        assert then.markets() == ["HE", "LE"]
    with pytest.raises(LookupError, match=r"no snapshot 'daily-20260203'.*daily-20260202"):
        Reader(uri, as_of_snapshot=date(2026, 2, 3))


def test_a_library_created_after_the_snapshot_day_is_a_lookup_error_naming_it(tmp_path: Path) -> None:
    """ArcticDB's own `NoDataFoundException` (its message: only the snapshot's name) came out of every read of a
    library that holds no snapshot of that day, e.g. the COT library created by the first report after it."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=64MB"
    with Store.open(uri, writer=True) as store:
        bars = pd.DataFrame({"close": [80.0]}, index=pd.DatetimeIndex([DAY1], name="ts_event"))
        store.library(FUTURES).write(data_symbol("HE", "ohlcv-1d"), bars)
        store.library(FUTURES).snapshot("daily-20260202")
        _cot(store, "HE", WEEKS[:1], 100.0)
        _atm_iv(store, "HE", DAY1, 0.3)
    with Reader(uri, as_of_snapshot=date(2026, 2, 2)) as then:
        for read in (then.cot, lambda m, at: then.feature(m, "atm_iv", at), lambda m, at: then.cot_panel([m], at)):
            with pytest.raises(LookupError, match=r"library '(cot|features)' has no snapshot daily-20260202"):
                read("HE", AT)
        assert then.markets() == ["HE"]


def test_the_reader_is_silent_unless_asked(uri: str, capfd: pytest.CaptureFixture[str]) -> None:
    with Reader(uri) as reader:
        reader.cot_panel(["HE", "LE"], AT)
        reader.futures_bars("HE", DAY1, DAY1 + pd.Timedelta(days=5))
    assert capfd.readouterr() == ("", "")
    with Reader(uri, log=True):
        pass
    assert "store.opened" in "".join(capfd.readouterr())
