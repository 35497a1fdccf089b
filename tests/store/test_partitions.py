"""Day-partitioned market-data streams on real ArcticDB (LMDB): a flush spanning midnight or a month end, a crash
between its appends, a failed newer append, a store written with the whole (legacy) symbol, reads across parts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_daemon.reader import Reader
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.lake import export_store_due, read_manifest
from hydra_daemon.store.maintenance import Maintenance, MaintenancePolicy, daily_snapshot_name
from hydra_daemon.store.partitions import PROBE_DAYS, read_stream, segment_slices, stream_symbols
from hydra_daemon.store.symbols import OPTIONS, partition_symbol, split_partition, stream_of
from hydra_daemon.store.writer import FlushError, StreamWriter, Watermark

STREAM = "HE.mbp-1"
KEYS = ["sequence"]
MONTH_END = pd.Timestamp("2024-02-29 23:59:58", tz="UTC")


def _quotes(first: int, count: int, start: pd.Timestamp = MONTH_END, step_s: float = 1.0) -> pd.DataFrame:
    """Rows `first .. first+count-1`, row i at `start + i * step_s` (sequence = i, so each row is one record)."""
    seq = np.arange(first, first + count, dtype="int64")
    index = pd.DatetimeIndex(start + pd.to_timedelta(seq * step_s, unit="s"), name="ts_recv")
    return pd.DataFrame({"sequence": seq, "bid_px_00": seq * 0.25}, index=index)


def _stream(store: Store) -> pd.DataFrame:
    return restore_utc(read_stream(store.library(OPTIONS), STREAM).data)


def _watermark_of(store: Store, symbol: str) -> Watermark | None:
    return Watermark.from_metadata(store.library(OPTIONS).read_metadata(symbol).metadata)


def test_names_of_partitions() -> None:
    day = date(2026, 12, 1)
    assert partition_symbol(STREAM, day) == "HE.mbp-1.2026-12-01"
    assert split_partition("HE.mbp-1.2026-12-01") == (STREAM, day)
    assert stream_of("HE.trades.2026-12-01") == "HE.trades"
    for other in ("HE.mbp-1", "HE.ohlcv-1d", "HE.chain", "HE.atm_iv", "HE.ohlcv-1d.2026-12-01", "HE.mbp-1.2026-13-01"):
        assert split_partition(other) is None
        assert stream_of(other) == other
    with pytest.raises(ValueError, match="not stored in day partitions"):
        partition_symbol("HE.ohlcv-1d", day)


def test_a_flush_spanning_a_month_end_is_one_append_per_day_oldest_first(store: Store) -> None:
    writer = StreamWriter(store)
    writer.add(OPTIONS, STREAM, _quotes(0, 5), KEYS)  # 23:59:58, 23:59:59 | 00:00:00 .. 00:00:02
    (commit,) = writer.flush_all()
    assert (commit.symbol, commit.rows) == (STREAM, 5)
    older, newer = partition_symbol(STREAM, date(2024, 2, 29)), partition_symbol(STREAM, date(2024, 3, 1))
    assert stream_symbols(store.library(OPTIONS), STREAM) == [older, newer]
    assert len(store.library(OPTIONS).read(older).data) == 2
    assert _watermark_of(store, older) == Watermark((MONTH_END + pd.Timedelta(seconds=1)).value, {"[1]": 1})
    assert (
        _watermark_of(store, newer)
        == commit.watermark
        == Watermark((MONTH_END + pd.Timedelta(seconds=4)).value, {"[4]": 1})
    )
    assert list(_stream(store)["sequence"]) == [0, 1, 2, 3, 4]
    assert StreamWriter(store).watermark(OPTIONS, STREAM) == commit.watermark  # found in the newest partition


def test_a_crash_between_the_two_appends_resumes_with_no_gap_and_no_duplicate(
    lmdb_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after the older day's append and before the newer day's: a restart finds the older day's
    watermark (the newest partition stored), upstream replays from it, and every record is stored once."""

    class Killed(BaseException):
        """The process dying (nothing after it runs: not an Exception the writer could handle)."""

    with Store.open(lmdb_uri, writer=True) as store:
        writer = StreamWriter(store)
        writer.add(OPTIONS, STREAM, _quotes(0, 2, step_s=0.5), KEYS)  # before the crash: committed normally
        writer.flush_all()
        library = store.library(OPTIONS)
        real_append = library.append
        calls: list[str] = []

        def append_then_die(symbol: str, *args: object, **kwargs: object) -> None:
            calls.append(symbol)
            if len(calls) == 2:
                raise Killed
            real_append(symbol, *args, **kwargs)

        monkeypatch.setattr(library, "append", append_then_die)
        writer.add(OPTIONS, STREAM, _quotes(2, 6, step_s=0.5), KEYS)  # 23:59:59.0 .. 00:00:01.5
        with pytest.raises(Killed):
            writer.flush_all()
        monkeypatch.undo()
    assert calls == [partition_symbol(STREAM, date(2024, 2, 29)), partition_symbol(STREAM, date(2024, 3, 1))]
    with Store.open(lmdb_uri, writer=True) as store:
        writer = StreamWriter(store)
        mark = writer.watermark(OPTIONS, STREAM)
        assert mark == Watermark((MONTH_END + pd.Timedelta(seconds=1.5)).value, {"[3]": 1})
        assert stream_symbols(store.library(OPTIONS), STREAM) == [partition_symbol(STREAM, date(2024, 2, 29))]
        replay = _quotes(0, 12, step_s=0.5)
        replay = replay[replay.index.asi8 >= mark.ts_ns]  # Databento replays every record with ts >= start
        assert writer.add(OPTIONS, STREAM, replay, KEYS) == 8
        writer.flush_all()
        assert list(_stream(store)["sequence"]) == list(range(12))


def test_a_failed_newer_append_is_retried_alone(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    library = store.library(OPTIONS)
    real_append = library.append
    failed: list[str] = []

    def fail_the_new_day(symbol: str, *args: object, **kwargs: object) -> None:
        if symbol.endswith("2024-03-01") and not failed:
            failed.append(symbol)
            raise ConnectionError("store unreachable")
        real_append(symbol, *args, **kwargs)

    writer = StreamWriter(store)
    monkeypatch.setattr(library, "append", fail_the_new_day)
    writer.add(OPTIONS, STREAM, _quotes(0, 4), KEYS)
    with pytest.raises(FlushError, match="store unreachable"):
        writer.flush_all()
    assert writer.pending_rows() == 2  # the older day committed and left the buffer
    assert writer.watermark(OPTIONS, STREAM) == Watermark((MONTH_END + pd.Timedelta(seconds=1)).value, {"[1]": 1})
    (commit,) = writer.flush_all()
    assert commit.rows == 2
    assert list(_stream(store)["sequence"]) == [0, 1, 2, 3]


def test_a_store_with_the_whole_legacy_symbol_is_captured_onward_into_partitions(lmdb_uri: str) -> None:
    """A store written before partitioning holds ``HE.mbp-1`` whole: its watermark is where capture resumes, the new
    rows go to day partitions, and the stream reads as legacy + partitions, each record once."""
    before = _quotes(0, 6, start=MONTH_END - pd.Timedelta(days=2), step_s=0.5 * 86_400 / 3)  # 2 days, 6 rows
    legacy_mark = Watermark(int(before.index.asi8[-1]), {"[5]": 1})
    with Store.open(lmdb_uri, writer=True) as store:
        store.library(OPTIONS).write(STREAM, before.iloc[:3], metadata=legacy_mark.to_metadata(KEYS))
        store.library(OPTIONS).append(STREAM, before.iloc[3:], metadata=legacy_mark.to_metadata(KEYS))
    with Store.open(lmdb_uri, writer=True) as store:
        writer = StreamWriter(store)
        assert writer.watermark(OPTIONS, STREAM) == legacy_mark
        replay = pd.concat([before.iloc[-2:], _quotes(6, 4, start=MONTH_END - pd.Timedelta(days=2), step_s=86_400 / 3)])
        assert writer.add(OPTIONS, STREAM, replay.sort_index(kind="stable"), KEYS) == 4
        writer.flush_all()
        library = store.library(OPTIONS)
        parts = stream_symbols(library, STREAM)
        assert parts[0] == STREAM and all(split_partition(p) for p in parts[1:])
        assert len(library.read(STREAM).data) == 6  # the legacy symbol is never written again
        stored = _stream(store)
        assert list(stored["sequence"]) == list(range(10))
        assert stored.index.is_monotonic_increasing
        first_new = replay.index[-4]
        window = read_stream(library, STREAM, date_range=(before.index[4], first_new)).data
        assert list(window["sequence"]) == [4, 5, 6]  # legacy and a partition, inclusive bounds


def test_reads_choose_the_parts_overlapping_the_window(store: Store) -> None:
    writer = StreamWriter(store)
    days = pd.date_range("2024-01-01", periods=PROBE_DAYS + 10, freq="D", tz="UTC")
    for i, day in enumerate(days):
        writer.add(OPTIONS, STREAM, _quotes(i, 1, start=day + pd.Timedelta(hours=12) - pd.Timedelta(seconds=i)), KEYS)
    writer.flush_all()
    library = store.library(OPTIONS)
    short = stream_symbols(library, STREAM, first=days[3].date(), last=days[5].date())  # found by name
    assert short == [partition_symbol(STREAM, d.date()) for d in days[3:6]]
    long = stream_symbols(library, STREAM, first=days[1].date(), last=days[-2].date())  # found by listing
    assert long == [partition_symbol(STREAM, d.date()) for d in days[1:-1]]
    window = read_stream(library, STREAM, date_range=(days[2], days[4] + pd.Timedelta(hours=12))).data
    assert list(window["sequence"]) == [2, 3, 4]
    empty = read_stream(library, STREAM, date_range=(days[-1] + pd.Timedelta(days=5), None)).data
    assert empty.empty and list(empty.columns) == ["sequence", "bid_px_00"]
    with pytest.raises(LookupError, match=r"HE\.trades"):
        read_stream(library, "HE.trades")


def test_the_reader_reads_a_legacy_symbol_and_day_partitions_as_one_stream(lmdb_uri: str) -> None:
    """`Reader.records` over a store holding the whole ``HE.mbp-1`` of the previous layout and day partitions after
    it: exactly the rows in the window, once, in order; `schemas` lists the stream once; a daily snapshot shows only
    the partitions it pinned, up to the end of its day."""
    legacy = _quotes(0, 3, start=MONTH_END - pd.Timedelta(days=1))  # 02-28 23:59:58 .. 02-29 00:00:00
    with Store.open(lmdb_uri, writer=True) as store:
        mark = Watermark(int(legacy.index.asi8[-1]), {"[2]": 1})
        store.library(OPTIONS).write(STREAM, legacy, metadata=mark.to_metadata(KEYS))
        writer = StreamWriter(store)
        writer.add(OPTIONS, STREAM, _quotes(3, 3, start=MONTH_END - pd.Timedelta(days=1), step_s=43_200), KEYS)
        writer.flush_all()  # rows 3, 4, 5 at 03-01 11:59:58, 03-01 23:59:58, 03-02 11:59:58
        store.library(OPTIONS).snapshot(daily_snapshot_name(date(2024, 3, 1)))
        writer.add(OPTIONS, STREAM, _quotes(6, 1, start=MONTH_END + pd.Timedelta(days=3)), KEYS)  # 03-04 00:00:04
        writer.flush_all()
    with Reader(lmdb_uri) as reader:
        assert reader.schemas("HE") == {OPTIONS: ["mbp-1"]}
        start, end = MONTH_END - pd.Timedelta(days=1), MONTH_END + pd.Timedelta(days=10)
        everything = reader.records(OPTIONS, "HE", "mbp-1", start, end)
        assert list(everything["sequence"]) == list(range(7)) and everything.index.is_monotonic_increasing
        assert str(everything.index.dtype) == "datetime64[ns, UTC]"
        window = reader.records(OPTIONS, "HE", "mbp-1", legacy.index[2], MONTH_END + pd.Timedelta(hours=12))
        assert list(window["sequence"]) == [2, 3]  # 02-29 00:00:00 (legacy) .. 03-01 11:59:58 (inclusive)
    with Reader(lmdb_uri, as_of_snapshot=date(2024, 3, 1)) as then:  # not row 5, of 03-02 (this snapshot pins it)
        assert list(then.records(OPTIONS, "HE", "mbp-1", start, end)["sequence"]) == list(range(5))


def test_the_lake_exports_a_stream_as_one_dataset_of_its_days(store: Store, tmp_path: Path) -> None:
    """Legacy whole symbol + day partitions → one ``options/HE.mbp-1`` dataset, one lake partition per UTC day
    holding exactly that day's rows; a second run publishes nothing."""
    legacy = _quotes(0, 2, start=MONTH_END - pd.Timedelta(seconds=1))  # 02-29 23:59:57, 23:59:58
    store.library(OPTIONS).write(
        STREAM, legacy, metadata=Watermark(int(legacy.index.asi8[-1]), {"[1]": 1}).to_metadata(KEYS)
    )
    writer = StreamWriter(store)
    writer.add(OPTIONS, STREAM, _quotes(2, 4, start=MONTH_END - pd.Timedelta(seconds=1)), KEYS)  # 23:59:59 | 03-01
    writer.flush_all()
    lake_dir = tmp_path / "lake"
    written = export_store_due(store, lake_dir, date(2024, 3, 1))
    dataset = lake_dir / OPTIONS / STREAM
    assert sorted(p.name for p in written) == ["date=2024-02-29", "date=2024-03-01"]
    manifest = read_manifest(dataset)
    assert manifest is not None and {d: i.rows for d, i in manifest.partitions.items()} == {
        date(2024, 2, 29): 3,
        date(2024, 3, 1): 3,
    }
    rows = pq.read_table(dataset / "date=2024-02-29" / "part-0.parquet").column("sequence").to_pylist()
    assert rows == [0, 1, 2]
    assert export_store_due(store, lake_dir, date(2024, 3, 1)) == []


def test_maintenance_compacts_a_closed_partition_once_then_never_looks_at_it_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole legacy symbol and the days before the newest are closed: one full compaction each, pruned to one
    version, then settled — later runs (a daily one included) touch only the newest day."""
    library = store.library(OPTIONS)
    start = pd.Timestamp("2024-03-01 10:00", tz="UTC")
    for i in range(5):  # the previous layout: fragmented appends to the whole symbol
        library.append(STREAM, _quotes(i, 1, start=start), metadata=Watermark(0, {}).to_metadata(KEYS))
    writer = StreamWriter(store, flush_rows=1)
    for day in range(3):  # then five one-row appends to each of 03-02, 03-03, 03-04
        for i in range(5):
            writer.add(OPTIONS, STREAM, _quotes(100 * day + i, 1, start=start + pd.Timedelta(days=day + 1)), KEYS)
            writer.flush_due()
    rows = list(_stream(store)["sequence"])
    now = {"ns": pd.Timestamp("2024-03-04 12:00", tz="UTC").value}
    maintenance = Maintenance(store, MaintenancePolicy(compact_every=1000, prune_grace_s=0.0), clock=lambda: now["ns"])
    maintenance.run_once()  # the first run is a daily one: compacts everything fully
    maintenance.run_once()  # prunes what the compaction superseded
    closed = [STREAM, *(partition_symbol(STREAM, date(2024, 3, d)) for d in (2, 3))]
    newest = partition_symbol(STREAM, date(2024, 3, 4))
    for symbol in [*closed, newest]:
        assert len(library._nvs.read_index(symbol)) == 1 and len(library.list_versions(symbol)) == 1, symbol
    looked_at: list[str] = []
    real_list_versions = library.list_versions

    def recorded(symbol: str | None = None, *args: object, **kwargs: object) -> object:
        if symbol is not None:  # not a snapshot's listing (each is read once: test_maintenance)
            looked_at.append(symbol)
        return real_list_versions(symbol, *args, **kwargs)

    monkeypatch.setattr(library, "list_versions", recorded)
    writer.add(OPTIONS, STREAM, _quotes(300, 1, start=start + pd.Timedelta(days=3, hours=1)), KEYS)
    writer.flush_due()
    now["ns"] += 86_400 * 10**9  # a new UTC day: the daily pass
    maintenance.run_once()
    assert set(looked_at) == {newest}
    assert list(_stream(store)["sequence"]) == [*rows, 300]
    assert Maintenance(store, MaintenancePolicy()).run_once() is not None  # a restart looks at each part once more
    assert set(looked_at) == {newest, *closed}


@given(st.lists(st.tuples(st.integers(1, 300), st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=30))
@settings(max_examples=300, deadline=None)
def test_segment_slices_cover_the_segments_in_whole_clean_ranges_of_bounded_rows(
    shapes: list[tuple[int, int, int]],
) -> None:
    """Segments of (rows, seconds spanned, gap to the next; 0: the next starts at this one's last timestamp)."""
    starts, ends, sizes, now = [], [], [], MONTH_END
    for rows, span, gap in shapes:
        starts.append(now)
        ends.append(now + pd.Timedelta(seconds=span) + pd.Timedelta(1, "ns"))  # end_index is exclusive
        sizes.append(rows)
        now += pd.Timedelta(seconds=span + gap)
    segments = pd.DataFrame(
        {"end_index": ends, "start_row": np.cumsum([0, *sizes[:-1]]), "end_row": np.cumsum(sizes)},
        index=pd.DatetimeIndex(starts),
    )
    limit = 400
    slices = list(segment_slices(segments, limit))
    assert slices[0][0] == starts[0] and slices[-1][1] == ends[-1] - pd.Timedelta(1, "ns")
    position = 0
    for first, last in slices:  # whole segments, in order, never splitting a timestamp between two slices
        assert starts[position] == first
        taken = []
        while position < len(sizes) and ends[position] - pd.Timedelta(1, "ns") <= last:
            taken.append(position)
            position += 1
        assert taken and ends[taken[-1]] - pd.Timedelta(1, "ns") == last
        assert position == len(sizes) or starts[position] > last
        for p in taken[:-1]:  # a clean boundary is cut once the next segment would pass the limit
            clean = starts[p + 1] >= ends[p]
            assert not clean or sum(sizes[taken[0] : p + 2]) <= limit
        if position < len(sizes):  # and only then: a slice is as large as the limit allows
            assert sum(sizes[p] for p in taken) + sizes[position] > limit
    assert position == len(sizes)
