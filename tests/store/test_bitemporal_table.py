"""BitemporalTable and FeatureStore on real ArcticDB (LMDB), and the same basics on S3 through moto."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hydra_daemon.cot.persist import cot_table
from hydra_daemon.store.arctic import Store, StoreReadOnlyError
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.cot_panel import refresh_cot_panel
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.lease import LEASE_OBJECT, LeaseHolder, LeaseLostError
from hydra_daemon.store.symbols import COT, COT_PANEL, FEATURES, FUTURES, cot_symbol
from hydra_daemon.store.writer import StreamWriter

FRI = pd.Timestamp("2024-01-05 20:30", tz="UTC")  # a COT release (15:30 New York)
TUE = pd.Timestamp("2024-01-02", tz="UTC")  # the report's as_of


@pytest.fixture(params=["lmdb", "s3"])
def store_uri(request: pytest.FixtureRequest) -> str:
    """Every `store` test here runs on LMDB and on S3 (moto)."""
    return str(request.getfixturevalue(f"{request.param}_uri"))


def _report(values: list[float], weeks: int | None = None) -> pd.DataFrame:
    as_of = [TUE + pd.Timedelta(weeks=w) for w in range(weeks or len(values))]
    return pd.DataFrame({"as_of": as_of, "net": values, "label": [f"w{i}" for i in range(len(values))]})


def _table(store: Store) -> BitemporalTable:
    return BitemporalTable(store.library(COT), cot_symbol("HE"))


def test_point_in_time_before_at_and_after_a_revision(store: Store) -> None:
    table = _table(store)
    table.record(_report([1.0, 2.0]), value_columns=["net", "label"], available_at=FRI, ingested_at=FRI)
    revised_at = FRI + pd.Timedelta(days=7)
    written = table.record(
        _report([1.5, 2.0]), value_columns=["net", "label"], available_at=revised_at, ingested_at=revised_at
    )
    assert written[["as_of", "net", "revision"]].values.tolist() == [[TUE, 1.5, 1]]
    assert table.point_in_time(FRI - pd.Timedelta(1)).empty
    at_release = table.point_in_time(FRI)
    assert at_release["net"].tolist() == [1.0, 2.0] and at_release["revision"].tolist() == [0, 0]
    assert table.point_in_time(revised_at - pd.Timedelta(1))["net"].tolist() == [1.0, 2.0]
    after = table.point_in_time(revised_at + pd.Timedelta(days=1))
    assert after["net"].tolist() == [1.5, 2.0] and after["revision"].tolist() == [1, 0]
    for frame in (after, table.history()):
        for column in ("as_of", "available_at", "ingested_at"):
            assert str(frame[column].dt.tz) == "UTC"
    assert table.history()[["net", "revision"]].values.tolist() == [[1.0, 0], [1.5, 1], [2.0, 0]]


def test_unchanged_rows_are_not_rewritten(store: Store) -> None:
    table = _table(store)
    report = _report([1.0, np.nan])
    assert len(table.record(report, value_columns=["net"], available_at=FRI, ingested_at=FRI)) == 2
    versions = len(store.library(COT).list_versions(cot_symbol("HE")))
    later = FRI + pd.Timedelta(hours=1)
    assert table.record(report, value_columns=["net"], available_at=later, ingested_at=later).empty
    assert len(store.library(COT).list_versions(cot_symbol("HE"))) == versions
    assert len(table.history()) == 2


def test_backfill_with_per_row_available_at(store: Store) -> None:
    table = _table(store)
    report = _report([1.0, 2.0, 3.0])
    available = report["as_of"] + pd.Timedelta(days=3, hours=20, minutes=30)
    table.record(report, value_columns=["net"], available_at=available, ingested_at=FRI + pd.Timedelta(weeks=10))
    mid = available.iloc[1]
    assert table.point_in_time(mid)["net"].tolist() == [1.0, 2.0]


def test_bad_timestamps_rejected(store: Store) -> None:
    table = _table(store)
    with pytest.raises(ValueError, match="timezone-naive"):
        table.record(_report([1.0]), value_columns=["net"], available_at=pd.Timestamp("2024-01-05"), ingested_at=FRI)
    naive_as_of = _report([1.0]).assign(as_of=pd.Timestamp("2024-01-02"))
    with pytest.raises(ValueError, match=r"cot/HE\.cot: datetime columns \['as_of'\] are timezone-naive"):
        table.record(naive_as_of, value_columns=["net"], available_at=FRI, ingested_at=FRI)
    table.record(_report([1.0]), value_columns=["net"], available_at=FRI, ingested_at=FRI)
    with pytest.raises(ValueError, match="transaction time must not go backwards"):
        table.record(_report([2.0]), value_columns=["net"], available_at=FRI, ingested_at=FRI - pd.Timedelta(1))


def test_a_bad_feature_frame_is_the_callers_error_not_a_store_failing(store: Store) -> None:
    """Health's "writes to store failing" is about the store; a frame failing validation raises to its caller and
    leaves health as it was."""
    naive = pd.DataFrame({"as_of": [pd.Timestamp("2024-01-02")], "available_at": [FRI], "value": [1.0]})
    with pytest.raises(ValueError, match="timezone-naive"):
        FeatureStore(store).write_feature("HE", "atm_iv", naive, ingested_at=FRI)
    assert store.usage().retrying is None and store.usage().problem is None


def test_feature_store_with_expiration_key(store: Store) -> None:
    features = FeatureStore(store)
    expirations = [pd.Timestamp("2024-02-14", tz="UTC"), pd.Timestamp("2024-04-12", tz="UTC")]
    first = pd.DataFrame(
        {"as_of": [TUE, TUE], "expiration": expirations, "available_at": [FRI, FRI], "value": [0.31, 0.28]}
    )
    assert features.write_feature("HE", "atm_iv", first, ingested_at=FRI) == 2
    later = FRI + pd.Timedelta(hours=2)
    second = first.assign(value=[0.31, 0.29], available_at=later)
    assert features.write_feature("HE", "atm_iv", second, ingested_at=later) == 1
    assert features.read_feature("HE", "atm_iv", at=FRI)["value"].tolist() == [0.31, 0.28]
    assert features.read_feature("HE", "atm_iv", at=later)["value"].tolist() == [0.31, 0.29]
    assert features.read_feature("HE", "atm_iv", at=FRI - pd.Timedelta(seconds=1)).empty
    assert len(features.read_feature("HE", "atm_iv")) == 3
    assert features.read_feature("HE", "cot_managed_money_net").empty


def test_stream_writer_redelivery_and_restart(store: Store) -> None:
    index = pd.date_range("2024-01-02", periods=6, freq="D", tz="UTC", name="ts_event")
    bars = pd.DataFrame({"instrument_id": np.arange(6), "close": np.linspace(70, 75, 6)}, index=index)
    writer = StreamWriter(store)
    writer.add(FUTURES, "HE.ohlcv-1d", bars.iloc[:4], ["instrument_id"])
    writer.flush_all()
    restarted = StreamWriter(store)
    assert restarted.add(FUTURES, "HE.ohlcv-1d", bars.iloc[2:], ["instrument_id"]) == 2
    restarted.flush_all()
    stored = restore_utc(store.library(FUTURES).read("HE.ohlcv-1d").data)
    pd.testing.assert_frame_equal(stored, bars, check_freq=False)


def test_feature_store_read_only_store_reads_but_cannot_write(lmdb_uri: str) -> None:
    frame = pd.DataFrame({"as_of": [TUE], "available_at": [FRI], "value": [1.0]})
    with Store.open(lmdb_uri, writer=True) as writer:
        FeatureStore(writer).write_feature("HE", "cot_managed_money_net", frame, ingested_at=FRI)
        with Store.open(lmdb_uri, writer=False) as reader:
            assert FeatureStore(reader).read_feature("HE", "cot_managed_money_net", at=FRI)["value"].tolist() == [1.0]
            with pytest.raises(StoreReadOnlyError):
                FeatureStore(reader).write_feature("HE", "cot_managed_money_net", frame)
    assert FEATURES == "features"


def test_s3_lost_lease_stops_the_writer(s3_bucket: Any) -> None:
    index = pd.date_range("2024-01-02", periods=2, freq="D", tz="UTC", name="ts_event")
    bars = pd.DataFrame({"instrument_id": [1, 2], "close": [70.0, 71.0]}, index=index)
    with Store.open(s3_bucket.uri, writer=True) as store:
        store.renew_lease()
        writer = StreamWriter(store)
        writer.add(FUTURES, "HE.ohlcv-1d", bars, ["instrument_id"])
        intruder = LeaseHolder("other:7:z", 7, "other", time.time(), time.time() + 600)
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=LEASE_OBJECT, Body=intruder.to_json())
        with pytest.raises(LeaseLostError, match="taken over"):
            store.renew_lease()
        with pytest.raises(LeaseLostError):
            writer.flush_all()
        assert writer.pending_rows() == 2
        assert not store.library(FUTURES).has_symbol("HE.ohlcv-1d")


def test_s3_lost_lease_stops_cot_writes_and_the_cot_panel(s3_bucket: Any) -> None:
    """COT rows and the COT panel are written past `FeatureStore` and `StreamWriter`: they must check the lease too
    (two writers on one symbol lose data)."""
    report = pd.DataFrame({"as_of": [TUE], "open_interest_all": [250_000.0]})
    with Store.open(s3_bucket.uri, writer=True) as store:
        cot_table(store, "HE").record(report, value_columns=["open_interest_all"], available_at=FRI, ingested_at=FRI)
        intruder = LeaseHolder("other:7:z", 7, "other", time.time(), time.time() + 600)
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=LEASE_OBJECT, Body=intruder.to_json())
        with pytest.raises(LeaseLostError, match="taken over"):
            store.renew_lease()
        revised = report.assign(open_interest_all=251_000.0)
        with pytest.raises(LeaseLostError):
            cot_table(store, "HE").record(
                revised, value_columns=["open_interest_all"], available_at=FRI, ingested_at=FRI + pd.Timedelta(days=7)
            )
        with pytest.raises(LeaseLostError):
            refresh_cot_panel(store)
        library = store.library(COT)
        assert [key.version for key in library.list_versions(cot_symbol("HE"))] == [0]
        assert not library.has_symbol(COT_PANEL)
