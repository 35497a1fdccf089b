"""Reader answers before anything is public keep the columns and UTC dtypes of later answers; an unknown column is
one error whatever `at` (found by a review helper)."""

from __future__ import annotations

import gc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

from hydra_daemon.reader import Reader, ReaderArgumentError
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.cot_panel import refresh_cot_panel
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.symbols import COT, OPTIONS, chain_symbol, cot_symbol
from hydra_daemon.store.writer import StreamWriter

AS_OF = pd.Timestamp("2021-01-05", tz="UTC")
RELEASE = pd.Timestamp("2021-01-08 20:30", tz="UTC")
BEFORE = RELEASE - pd.Timedelta(days=30)
UTC_NS = "datetime64[ns, UTC]"


@pytest.fixture(scope="module")
def cot_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two markets' COT reports (one release each), with the COT panel the daemon keeps."""
    uri = f"lmdb://{tmp_path_factory.mktemp('review') / 'arctic'}?map_size=1GB"
    with Store.open(uri, writer=True) as store:
        for market in ("HE", "LE"):
            BitemporalTable(store.library(COT), cot_symbol(market)).record(
                pd.DataFrame({"as_of": [AS_OF], "open_interest_all": [250_000.0]}),
                value_columns=["open_interest_all"],
                available_at=RELEASE,
                ingested_at=RELEASE + pd.Timedelta(minutes=1),
            )
        refresh_cot_panel(store)
    gc.collect()
    return uri


@pytest.mark.parametrize("markets", [["HE"], ["HE", "LE"]])
def test_cot_panel_before_any_report_keeps_utc_timestamp_columns(cot_uri: str, markets: list[str]) -> None:
    """Before any report is public every row is missing, but `as_of`/`available_at` must still be
    datetime64[ns, UTC] (as they are after the release, and as a market without a report gets beside one with):
    a backtest that starts stepping `at` before the first report gets float64 columns instead."""
    columns = ["as_of", "available_at", "open_interest_all"]
    with Reader(cot_uri) as reader:
        after = reader.cot_panel(markets, RELEASE, columns=columns)
        before = reader.cot_panel(markets, BEFORE, columns=columns)
    assert str(after["as_of"].dtype) == UTC_NS  # sound once a report is public
    assert list(before.columns) == columns
    assert before["as_of"].isna().all()
    assert str(before["as_of"].dtype) == UTC_NS, before.dtypes.to_dict()
    assert str(before["available_at"].dtype) == UTC_NS, before.dtypes.to_dict()


def test_cot_panel_before_any_report_has_the_same_columns_as_after(cot_uri: str) -> None:
    """Without `columns=`, the panel before the first report has no columns at all (a row of missing values per
    market is what the docstring promises): `panel["open_interest_all"]` raises KeyError for early `at`."""
    with Reader(cot_uri) as reader:
        after = reader.cot_panel(["HE", "LE"], RELEASE)
        before = reader.cot_panel(["HE", "LE"], BEFORE)
    assert list(before.columns) == list(after.columns)
    for column in ("ingested_at", "as_of", "available_at"):
        assert str(before[column].dtype) == UTC_NS


def test_cot_panel_polars_before_any_report_keeps_utc_datetimes(cot_uri: str) -> None:
    with Reader(cot_uri, output="polars") as reader:
        before = reader.cot_panel(["HE"], BEFORE, columns=["as_of"])
    assert before.schema["as_of"] == pl.Datetime("ns", "UTC"), before.schema


@pytest.mark.parametrize("method", ["cot", "cot_panel"])
def test_an_unknown_column_is_an_error_whatever_at(cot_uri: str, method: str) -> None:
    """An unknown column raises ReaderArgumentError after the release but is silently answered with an all-NaN
    column before it: the same call is an error or not depending on `at`."""
    calls = {
        "cot": lambda r, at: r.cot("HE", at, columns=["as_of", "open_interest_al"]),
        "cot_panel": lambda r, at: r.cot_panel(["HE", "LE"], at, columns=["as_of", "open_interest_al"]),
    }
    with Reader(cot_uri) as reader:
        with pytest.raises(ReaderArgumentError, match="unknown columns"):
            calls[method](reader, RELEASE)
        with pytest.raises(ReaderArgumentError, match="unknown columns"):
            calls[method](reader, BEFORE)


EARLIEST = datetime(1677, 9, 22, 1, tzinfo=UTC)  # within what the Reader accepts, days from what pandas can hold


@pytest.mark.parametrize(
    "read",
    [
        lambda r: r.feature_panel(["HE"], ["atm_iv"], EARLIEST).dropna(),
        lambda r: r.options_chain("HE", EARLIEST),
        lambda r: r.cot("HE", EARLIEST, start=EARLIEST),
        lambda r: r.feature("HE", "atm_iv", EARLIEST, start=EARLIEST),
    ],
)
def test_the_earliest_accepted_at_is_answered_with_nothing_known(tmp_path: Path, read: Any) -> None:
    """Looking back from `at` (the panel's and the chain's widening windows, a table's lead) reached before 1677-09-21
    and raised OverflowError instead of an answer (found by a review helper)."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=256MB"
    with Store.open(uri, writer=True) as store:
        BitemporalTable(store.library(COT), cot_symbol("HE")).record(
            pd.DataFrame({"as_of": [AS_OF], "open_interest_all": [1.0]}),
            value_columns=["open_interest_all"],
            available_at=RELEASE,
            ingested_at=RELEASE - pd.Timedelta(days=30),  # a lead: rows ingested before their as_of
        )
        iv = pd.DataFrame({"as_of": [RELEASE], "available_at": [RELEASE], "expiration": [RELEASE], "value": [0.3]})
        FeatureStore(store).write_feature("HE", "atm_iv", iv, ingested_at=RELEASE)
        writer = StreamWriter(store)
        chain = pd.DataFrame({"instrument_id": [1]}, index=pd.DatetimeIndex([RELEASE], name="snapshot_time"))
        writer.add(OPTIONS, chain_symbol("HE"), chain, key_columns=["instrument_id"])
        writer.flush_all()
    with Reader(uri) as reader:
        answer = read(reader)
    assert answer.empty
