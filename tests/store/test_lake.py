"""Parquet lake export: real ArcticDB on LMDB, read back with polars and pyarrow."""

from __future__ import annotations

import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import arcticdb
import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from arcticdb.version_store.library import Library
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hydra_daemon.store import lake
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.lake import (
    MANIFEST,
    PARTITIONING,
    LakeWatermark,
    PartitionInfo,
    dataset_root,
    export_day,
    export_due,
    export_from_store,
    export_range,
    export_store_due,
    read_manifest,
)
from hydra_daemon.store.symbols import FUTURES
from hydra_daemon.store.writer import StreamWriter

SYMBOL = "HE.ohlcv-1d"


@pytest.fixture
def library(tmp_path: Path) -> Library:
    arctic = arcticdb.Arctic(f"lmdb://{tmp_path / 'arctic'}")
    return arctic.get_library("futures", create_if_missing=True)


def _bars(start: str, periods: int, freq: str) -> pd.DataFrame:
    index = pd.date_range(start, periods=periods, freq=freq, tz="UTC", name="ts_event")
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "close": rng.normal(80, 1, periods),
            "volume": rng.integers(0, 1000, periods),
            "raw_symbol": [None if i % 5 == 0 else f"HEG{i}" for i in range(periods)],
            "ts_recv": index + pd.Timedelta(microseconds=1500),
        },
        index=index,
    )


def _expected(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.reset_index()


def _polars(root: Path) -> pl.DataFrame:
    return pl.scan_parquet(root / "**/*.parquet", hive_partitioning=True).collect().sort("ts_event")


def _pyarrow(root: Path) -> pa.Table:
    return ds.dataset(root, format="parquet", partitioning=PARTITIONING).to_table().sort_by("ts_event")


def _files(root: Path) -> list[str]:
    """The partition files under `root` (the manifest aside)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def test_export_range_is_read_back_exactly_by_polars_and_pyarrow(library: Library, tmp_path: Path) -> None:
    bars = _bars("2024-01-05 20:00", 12, "h")  # Fri 20:00 .. Sat 07:00 UTC
    library.write(SYMBOL, bars)
    lake_dir = tmp_path / "lake"

    written = export_range(library, "futures", SYMBOL, date(2024, 1, 4), date(2024, 1, 7), lake_dir)

    root = dataset_root(lake_dir, "futures", SYMBOL)
    assert written == [root / "date=2024-01-05", root / "date=2024-01-06"]
    assert _files(root) == ["date=2024-01-05/part-0.parquet", "date=2024-01-06/part-0.parquet"]
    assert pq.ParquetFile(written[0] / "part-0.parquet").metadata.row_group(0).column(0).compression == "ZSTD"

    frame = _polars(root)
    assert frame.schema["ts_event"] == pl.Datetime("ns", "UTC")
    assert frame.schema["ts_recv"] == pl.Datetime("ns", "UTC")
    got = frame.drop("date").to_pandas()
    pd.testing.assert_frame_equal(got, _expected(bars), check_dtype=False)
    assert got["ts_event"].dtype == "datetime64[ns, UTC]"
    assert frame.schema["date"] == pl.Date
    assert frame["date"].cast(pl.String).to_list() == ["2024-01-05"] * 4 + ["2024-01-06"] * 8

    table = _pyarrow(root)
    assert table.schema.field("date").type == pa.date32()
    assert table.schema.field("ts_event").type == pa.timestamp("ns", tz="UTC")
    assert table.schema.field("ts_recv").type == pa.timestamp("ns", tz="UTC")
    assert table.schema.field("raw_symbol").type == pa.string()
    pd.testing.assert_frame_equal(table.drop_columns(["date"]).to_pandas(), _expected(bars), check_dtype=False)

    duck = duckdb.sql(f"select * from read_parquet('{root}/**/*.parquet', hive_partitioning = true) order by ts_event")
    assert dict(zip(duck.columns, duck.types, strict=True))["date"] == "DATE"
    assert duck.fetchdf()["date"].tolist()[:1] == [pd.Timestamp("2024-01-05")]

    manifest = read_manifest(root)
    assert manifest is not None and manifest.time_column == "ts_event" and manifest.rows == 12
    assert manifest.partitions[date(2024, 1, 6)] == PartitionInfo(
        8, "2024-01-06T00:00:00+00:00", "2024-01-06T07:00:00+00:00", source_version=0
    )
    assert ("ts_recv", "timestamp[ns, tz=UTC]") in manifest.schema
    assert manifest.watermark.index_through is None  # a manual export leaves the daemon's watermark alone


def test_a_day_whose_strings_are_all_missing_keeps_the_string_type(library: Library, tmp_path: Path) -> None:
    bars = _bars("2024-01-05 22:00", 4, "h").assign(raw_symbol=[None, None, "HEG4", "HEG4"])
    library.write(SYMBOL, bars)
    export_range(library, "futures", SYMBOL, date(2024, 1, 5), date(2024, 1, 6), tmp_path / "lake")

    root = dataset_root(tmp_path / "lake", "futures", SYMBOL)
    assert pq.read_schema(root / "date=2024-01-05" / "part-0.parquet").field("raw_symbol").type == pa.string()
    assert _polars(root)["raw_symbol"].to_list() == [None, None, "HEG4", "HEG4"]


def test_re_export_is_idempotent_and_picks_up_new_rows_without_duplicates(library: Library, tmp_path: Path) -> None:
    bars = _bars("2024-02-01 00:00", 48, "30min")
    library.write(SYMBOL, bars.iloc[:30])
    lake_dir = tmp_path / "lake"
    day = date(2024, 2, 1)

    first = export_day(library, "futures", SYMBOL, day, lake_dir)
    assert first is not None
    content = (first / "part-0.parquet").read_bytes()
    assert export_day(library, "futures", SYMBOL, day, lake_dir) == first
    assert (first / "part-0.parquet").read_bytes() == content

    library.append(SYMBOL, bars.iloc[30:])
    export_day(library, "futures", SYMBOL, day, lake_dir)
    root = dataset_root(lake_dir, "futures", SYMBOL)
    got = _polars(root).drop("date").to_pandas()
    pd.testing.assert_frame_equal(got, _expected(bars), check_dtype=False)
    assert _files(root) == ["date=2024-02-01/part-0.parquet"]
    assert list((lake_dir / ".staging").iterdir()) == []


def test_day_without_rows_writes_nothing(library: Library, tmp_path: Path) -> None:
    library.write(SYMBOL, _bars("2024-03-01", 3, "h"))
    assert export_day(library, "futures", SYMBOL, date(2024, 3, 2), tmp_path / "lake") is None
    assert not dataset_root(tmp_path / "lake", "futures", SYMBOL).exists()


class _CrashAfterStaging(RuntimeError):
    pass


class _CrashingWriter(pq.ParquetWriter):
    def write_table(self, table: pa.Table, *args: Any, **kwargs: Any) -> None:
        super().write_table(table.slice(0, 1), *args, **kwargs)
        raise _CrashAfterStaging("disk went away mid-write")


def test_crash_mid_export_leaves_no_partial_partition(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library.write(SYMBOL, _bars("2024-04-01", 30, "h"))
    lake_dir = tmp_path / "lake"
    root = dataset_root(lake_dir, "futures", SYMBOL)
    published = export_day(library, "futures", SYMBOL, date(2024, 4, 1), lake_dir)
    assert published is not None
    before = (published / "part-0.parquet").read_bytes()

    monkeypatch.setattr(lake.pq, "ParquetWriter", _CrashingWriter)
    with pytest.raises(_CrashAfterStaging):
        export_day(library, "futures", SYMBOL, date(2024, 4, 2), lake_dir)
    with pytest.raises(_CrashAfterStaging):
        export_day(library, "futures", SYMBOL, date(2024, 4, 1), lake_dir)
    monkeypatch.undo()

    assert _files(root) == ["date=2024-04-01/part-0.parquet"]
    assert (published / "part-0.parquet").read_bytes() == before
    assert list((lake_dir / ".staging").iterdir()) == []
    assert _polars(root).height == 24


def test_leftover_staging_from_a_killed_export_is_invisible_to_scans(library: Library, tmp_path: Path) -> None:
    library.write(SYMBOL, _bars("2024-04-01", 5, "h"))
    lake_dir = tmp_path / "lake"
    export_day(library, "futures", SYMBOL, date(2024, 4, 1), lake_dir)
    leftover = lake_dir / ".staging" / "deadbeef"
    leftover.mkdir(parents=True)
    (leftover / "part-0.parquet").write_bytes(b"PAR1 truncated")

    root = dataset_root(lake_dir, "futures", SYMBOL)
    assert _polars(root).height == 5
    assert _pyarrow(root).num_rows == 5


def test_bitemporal_table_partitions_by_as_of_and_keeps_every_revision(library: Library, tmp_path: Path) -> None:
    table = BitemporalTable(library, "HE.cot")
    as_of = pd.to_datetime(["2021-01-05", "2021-01-12"]).tz_localize("UTC")
    first = pd.DataFrame({"as_of": as_of, "open_interest": [100.0, 110.0]})
    table.record(
        first,
        value_columns=["open_interest"],
        available_at=pd.Series(as_of + pd.Timedelta(days=3, hours=20, minutes=30)),
        ingested_at=pd.Timestamp("2021-01-16 12:00", tz="UTC"),
    )
    revised = pd.DataFrame({"as_of": as_of[1:], "open_interest": [111.0]})
    table.record(
        revised,
        value_columns=["open_interest"],
        available_at=pd.Timestamp("2021-01-22 20:30", tz="UTC"),
        ingested_at=pd.Timestamp("2021-01-23 12:00", tz="UTC"),
    )
    lake_dir = tmp_path / "lake"
    root = dataset_root(lake_dir, "cot", "HE.cot")

    assert export_range(library, "cot", "HE.cot", date(2021, 1, 6), date(2021, 1, 11), lake_dir) == []
    assert export_day(library, "cot", "HE.cot", date(2021, 1, 12), lake_dir) == root / "date=2021-01-12"
    assert _files(root) == ["date=2021-01-12/part-0.parquet"]
    written = export_range(library, "cot", "HE.cot", date(2021, 1, 1), date(2021, 1, 31), lake_dir)

    assert written == [root / "date=2021-01-05", root / "date=2021-01-12"]
    frame = pl.scan_parquet(root / "**/*.parquet", hive_partitioning=True).collect().sort("as_of", "revision")
    for column in ("as_of", "available_at", "ingested_at"):
        assert frame.schema[column] == pl.Datetime("ns", "UTC")
    assert frame["open_interest"].to_list() == [100.0, 110.0, 111.0]
    assert frame["revision"].to_list() == [0, 0, 1]
    assert frame["available_at"].to_list()[2] == pd.Timestamp("2021-01-22 20:30", tz="UTC")
    assert frame["date"].cast(pl.String).to_list() == ["2021-01-05", "2021-01-12", "2021-01-12"]
    arrow = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert arrow.num_rows == 3
    assert arrow.schema.field("available_at").type == pa.timestamp("ns", tz="UTC")


def test_bad_names_and_missing_symbols_are_rejected_clearly(library: Library, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"symbol name '\.\./etc'"):
        dataset_root(tmp_path, "futures", "../etc")
    with pytest.raises(LookupError, match=r"no symbol 'HE\.nope' in library 'futures' \(it holds: nothing yet\)"):
        export_day(library, "futures", "HE.nope", date(2024, 1, 1), tmp_path / "lake")
    with pytest.raises(ValueError, match="before start"):
        export_range(library, "futures", SYMBOL, date(2024, 1, 2), date(2024, 1, 1), tmp_path / "lake")


def test_export_from_store_reads_beside_a_writer_holding_the_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """And releases the store pages each read touched before the next (a day of quotes touches ~500 MB)."""
    uri = f"lmdb://{tmp_path / 'store'}?map_size=1GB"
    bars = _bars("2024-05-01 23:00", 4, "30min")
    released: list[Store] = []
    release = Store.release_mapped_pages

    def counting_release(self: Store) -> None:
        released.append(self)
        release(self)

    with Store.open(uri, writer=True) as store:
        writer = StreamWriter(store)
        writer.add(FUTURES, SYMBOL, bars, key_columns=["raw_symbol"])
        writer.flush_all()
        monkeypatch.setattr(Store, "release_mapped_pages", counting_release)
        written = export_from_store(uri, FUTURES, SYMBOL, date(2024, 5, 1), date(2024, 5, 3), tmp_path / "lake")

    root = dataset_root(tmp_path / "lake", FUTURES, SYMBOL)
    assert written == [root / "date=2024-05-01", root / "date=2024-05-02"]
    assert len(released) >= 2 and store not in released  # before each day, by the exporting (read-only) store
    pd.testing.assert_frame_equal(_polars(root).drop("date").to_pandas(), _expected(bars), check_dtype=False)


_timestamps = st.integers(min_value=1_700_000_000 * 10**9, max_value=1_700_400_000 * 10**9)
_rows = st.lists(
    st.tuples(
        _timestamps,
        st.floats(allow_nan=True, allow_infinity=False, width=64),
        st.integers(min_value=-(2**62), max_value=2**62),
        st.one_of(st.none(), st.text(max_size=8)),
        _timestamps,
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows)
def test_any_rows_round_trip_through_the_lake(
    library: Library, tmp_path: Path, rows: list[tuple[int, float, int, str | None, int]]
) -> None:
    index = pd.DatetimeIndex(sorted(r[0] for r in rows), tz="UTC", name="ts_event")
    frame = pd.DataFrame(
        {
            "price": [r[1] for r in rows],
            "size": np.array([r[2] for r in rows], dtype="int64"),
            "note": [r[3] for r in rows],
            "ts_recv": pd.to_datetime([r[4] for r in rows], utc=True),
        },
        index=index,
    )
    symbol = f"HE.prop-{uuid.uuid4().hex[:8]}"
    library.write(symbol, frame)
    lake_dir = tmp_path / uuid.uuid4().hex
    days = index.date
    written = export_range(library, "futures", symbol, days.min(), days.max(), lake_dir)

    assert [p.name for p in written] == [f"date={d.isoformat()}" for d in sorted(set(days))]
    got = _polars(dataset_root(lake_dir, "futures", symbol))
    assert got.schema["ts_recv"] == pl.Datetime("ns", "UTC")
    assert got["date"].to_list() == [ts.date() for ts in got["ts_event"].to_list()]
    pd.testing.assert_frame_equal(got.drop("date").to_pandas(), _expected(frame), check_dtype=False)


def test_export_due_publishes_complete_days_once_and_keeps_the_rest_pending(library: Library, tmp_path: Path) -> None:
    bars = _bars("2024-06-03 12:00", 48, "h")  # Mon 12:00 .. Wed 11:00
    library.write(SYMBOL, bars.iloc[:30])  # .. Tue 17:00
    lake_dir = tmp_path / "lake"
    root = dataset_root(lake_dir, "futures", SYMBOL)

    assert export_due(library, "futures", SYMBOL, lake_dir, date(2024, 6, 3)) == [root / "date=2024-06-03"]
    manifest = read_manifest(root)
    assert manifest is not None
    assert manifest.watermark == LakeWatermark(bars.index[29].value, (date(2024, 6, 4),))
    assert export_due(library, "futures", SYMBOL, lake_dir, date(2024, 6, 3)) == []  # nothing new: no work

    library.append(SYMBOL, bars.iloc[30:])
    assert export_due(library, "futures", SYMBOL, lake_dir, date(2024, 6, 4)) == [root / "date=2024-06-04"]
    assert export_due(library, "futures", SYMBOL, lake_dir, date(2024, 6, 5)) == [root / "date=2024-06-05"]
    assert _files(root) == [f"date=2024-06-0{d}/part-0.parquet" for d in (3, 4, 5)]
    pd.testing.assert_frame_equal(_polars(root).drop("date").to_pandas(), _expected(bars), check_dtype=False)
    manifest = read_manifest(root)
    assert manifest is not None and manifest.rows == 48 and manifest.watermark.pending_days == ()

    manual = tmp_path / "manual"
    export_range(library, "futures", SYMBOL, date(2024, 6, 3), date(2024, 6, 5), manual)
    for part in _files(root):
        assert pq.read_table(root / part).equals(pq.read_table(dataset_root(manual, "futures", SYMBOL) / part))


def test_export_due_re_publishes_only_the_as_of_day_a_revision_touched(library: Library, tmp_path: Path) -> None:
    table = BitemporalTable(library, "HE.cot")
    as_of = pd.to_datetime(["2021-01-05", "2021-01-12"]).tz_localize("UTC")
    table.record(
        pd.DataFrame({"as_of": as_of, "open_interest": [100.0, 110.0]}),
        value_columns=["open_interest"],
        available_at=pd.Series(as_of + pd.Timedelta(days=3, hours=20, minutes=30)),
        ingested_at=pd.Timestamp("2021-01-16 12:00", tz="UTC"),
    )
    lake_dir = tmp_path / "lake"
    root = dataset_root(lake_dir, "cot", "HE.cot")
    assert export_due(library, "cot", "HE.cot", lake_dir, date(2021, 1, 16)) == [
        root / "date=2021-01-05",
        root / "date=2021-01-12",
    ]
    first_day = (root / "date=2021-01-05" / "part-0.parquet").stat().st_mtime_ns

    table.record(
        pd.DataFrame({"as_of": as_of[1:], "open_interest": [111.0]}),
        value_columns=["open_interest"],
        available_at=pd.Timestamp("2021-01-22 20:30", tz="UTC"),
        ingested_at=pd.Timestamp("2021-01-23 12:00", tz="UTC"),
    )
    assert export_due(library, "cot", "HE.cot", lake_dir, date(2021, 1, 23)) == [root / "date=2021-01-12"]
    assert (root / "date=2021-01-05" / "part-0.parquet").stat().st_mtime_ns == first_day
    manifest = read_manifest(root)
    assert manifest is not None and manifest.time_column == "as_of"
    assert manifest.partitions[date(2021, 1, 12)].rows == 2
    assert manifest.watermark.index_through == pd.Timestamp("2021-01-23 12:00", tz="UTC").value


def test_rows_ingested_at_the_time_the_lake_exported_through_reach_the_lake(library: Library, tmp_path: Path) -> None:
    """`BitemporalTable.record` may write two transactions at one ``ingested_at``, and the lake read only after its
    watermark: the second's rows were in the store and never in the lake (found by a review helper)."""
    table = BitemporalTable(library, "HE.settlement", keys=("as_of", "symbol"))
    at, day = pd.Timestamp("2024-03-06 00:05", tz="UTC"), pd.Timestamp("2024-03-05", tz="UTC")
    lake_dir = tmp_path / "lake"
    root = dataset_root(lake_dir, "features", "HE.settlement")
    published = []
    for as_of, value, ingested in ((day, 80.0, at), (day - pd.Timedelta(days=1), 79.0, at), (day, 81.0, at)):
        rows = pd.DataFrame({"as_of": [as_of], "symbol": ["HEJ4"], "value": [value]})
        table.record(rows, value_columns=["value"], available_at=at, ingested_at=ingested)
        published.append(export_due(library, "features", "HE.settlement", lake_dir, date(2024, 3, 10)))
    assert root / "date=2024-03-04" in published[1], "the second write at the same time is published"
    assert export_due(library, "features", "HE.settlement", lake_dir, date(2024, 3, 10)) == [], "nothing new"
    stored = library.read("HE.settlement").data
    exported = pl.scan_parquet(root / "**/*.parquet", hive_partitioning=True).collect()
    assert sorted(exported["value"].to_list()) == sorted(stored["value"].tolist()) == [79.0, 80.0, 81.0]
    manifest = read_manifest(root)
    assert manifest is not None and manifest.watermark.rows_at_edge == 3


def test_export_store_due_spreads_a_catch_up_over_calls_market_data_first(tmp_path: Path) -> None:
    uri = f"lmdb://{tmp_path / 'store'}?map_size=1GB"
    lake_dir = tmp_path / "lake"
    with Store.open(uri, writer=True) as store:
        store.library(FUTURES).write(SYMBOL, _bars("2024-06-03", 48, "h"))
        store.library("cot").write("HE.ohlcv-1h", _bars("2024-06-03", 24, "h"))
        through = date(2024, 6, 30)
        first = export_store_due(store, lake_dir, through, until=time.monotonic())  # budget already spent
        assert first == [dataset_root(lake_dir, FUTURES, SYMBOL) / f"date=2024-06-0{d}" for d in (3, 4)]
        assert export_store_due(store, lake_dir, through, until=time.monotonic()) == [
            dataset_root(lake_dir, "cot", "HE.ohlcv-1h") / "date=2024-06-03"
        ]
        assert export_store_due(store, lake_dir, through) == []


def test_a_day_larger_than_a_segment_is_read_and_written_a_slice_at_a_time(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day of quotes (11.6 M rows) read whole took ~4 GB: it is read a segment's rows at a time, the store pages
    and Arrow's freed memory released after each read, and written in row groups of `ROW_GROUP_ROWS` rows; so the
    file depends on the rows alone: re-exported after maintenance merged the day's segments, it is the same bytes."""
    monkeypatch.setattr(lake, "ROW_GROUP_ROWS", 70_000)
    library = store.library(FUTURES)
    per_append = 30_000
    for number in range(8):  # 4 rows a second; the third append starts at the timestamp the second one ends at
        start = pd.Timestamp("2024-04-01", tz="UTC") + pd.Timedelta(seconds=(number * per_append - (number >= 2)) / 4)
        index = pd.DatetimeIndex(start.value + np.arange(per_append) * 250_000_000, tz="UTC", name="ts_event")
        library.append(SYMBOL, pd.DataFrame({"sequence": np.arange(per_append) + number * per_append}, index=index))
    stored = restore_utc(library.read(SYMBOL).data)
    calls: list[object] = []
    read, release = Library.read, store.release_mapped_pages

    def counting_read(self: Library, symbol: str, *args: Any, **kwargs: Any) -> Any:
        result = read(self, symbol, *args, **kwargs)
        if kwargs.get("date_range") is not None:
            calls.append(len(result.data))
        return result

    def counting_release() -> None:
        calls.append("release")
        release()

    def counting_arrow_release() -> None:
        calls.append("arrow")
        release_arrow()

    release_arrow = lake._release_arrow_memory
    monkeypatch.setattr(Library, "read", counting_read)
    monkeypatch.setattr(store, "release_mapped_pages", counting_release)
    monkeypatch.setattr(lake, "_release_arrow_memory", counting_arrow_release)
    lake_dir = tmp_path / "lake"
    [partition] = export_store_due(store, lake_dir, date(2024, 4, 1))
    reads = [(at, call) for at, call in enumerate(calls) if isinstance(call, int)]
    assert sum(size for _, size in reads) == len(stored) and len(reads) > 1
    assert max(size for _, size in reads) <= library.options().rows_per_segment
    assert all(calls[at + 1 : at + 3] == ["release", "arrow"] for at, _ in reads)  # what Arrow freed, too
    part = pq.ParquetFile(partition / "part-0.parquet")
    groups = [part.metadata.row_group(g).num_rows for g in range(part.metadata.num_row_groups)]
    assert groups == [70_000, 70_000, 70_000, 30_000]
    assert part.read().column("sequence").to_pylist() == stored["sequence"].tolist()
    content = (partition / "part-0.parquet").read_bytes()

    library.compact_data(SYMBOL)
    assert len(library._nvs.read_index(SYMBOL)) < 8
    export_range(library, FUTURES, SYMBOL, date(2024, 4, 1), date(2024, 4, 1), lake_dir)
    assert (partition / "part-0.parquet").read_bytes() == content
