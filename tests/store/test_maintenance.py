"""Maintenance on real ArcticDB (LMDB): compaction keeps data and watermarks, pruning honours the grace window and
snapshots, daily snapshots and their retention, PIT answers unchanged, and a store of the previous layout converges."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from arcticdb.exceptions import NoDataFoundException
from arcticdb.version_store.library import Library
from arcticdb_ext import set_config_int
from arcticdb_ext.storage import KeyType
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from hydra_daemon.cot.persist import cot_table
from hydra_daemon.reader import Reader
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.lease import LeaseLostError
from hydra_daemon.store.maintenance import (
    GROWTH,
    MERGED_ROWS,
    PRUNE_BATCH,
    Maintenance,
    MaintenancePolicy,
    daily_snapshot_name,
    merge_run,
)
from hydra_daemon.store.partitions import read_stream, stream_symbols
from hydra_daemon.store.resident import resident_bytes
from hydra_daemon.store.symbols import COT, FEATURES, FUTURES, cot_symbol, partition_symbol
from hydra_daemon.store.writer import StreamWriter, Watermark
from tests.conftest import STORAGE_LOCK_WAIT_MS

SYMBOL = "HE.ohlcv-1m"  # one whole symbol (quotes and trades are stored per UTC day: see the partition tests)
QUOTES = "HE.trades"
BASE = pd.Timestamp("2024-03-01 14:30", tz="UTC")
DAY_NS = 86_400 * 10**9


def _trades(start: int, count: int = 1) -> pd.DataFrame:
    index = pd.DatetimeIndex([BASE + pd.Timedelta(seconds=s) for s in range(start, start + count)], name="ts_event")
    return pd.DataFrame({"sequence": np.arange(start, start + count, dtype="int64")}, index=index)


def _append_one_row_flushes(store: Store, count: int) -> None:
    writer = StreamWriter(store, flush_rows=1)
    for second in range(count):
        writer.add(FUTURES, SYMBOL, _trades(second), ["sequence"])
        writer.flush_due()


def _segments(store: Store, library: str, symbol: str) -> int:
    return len(store.library(library)._nvs.read_index(symbol))


def _converge(maintenance: Maintenance) -> None:
    """Two runs: the version a compaction supersedes is pruned by the next run (after the grace window, here 0)."""
    maintenance.run_once()
    maintenance.run_once()


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_compaction_and_pruning_keep_data_and_the_watermark(store: Store) -> None:
    _append_one_row_flushes(store, 7)
    assert _segments(store, FUTURES, SYMBOL) == 7
    _converge(Maintenance(store, MaintenancePolicy(compact_every=3, prune_grace_s=0.0)))
    assert _segments(store, FUTURES, SYMBOL) == 1
    assert len(store.library(FUTURES).list_versions(SYMBOL)) == 1
    assert list(restore_utc(store.library(FUTURES).read(SYMBOL).data)["sequence"]) == list(range(7))
    assert StreamWriter(store).watermark(FUTURES, SYMBOL) == Watermark(
        (BASE + pd.Timedelta(seconds=6)).value, {"[6]": 1}
    )


def test_a_lease_lost_during_a_run_stops_it_before_the_next_write(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run can take long (after a restart it looks at every partition once); an S3 lease another writer takes over
    meanwhile must stop it, as it stops every other write: a compaction racing the other writer's append loses one."""
    _append_one_row_flushes(store, 7)
    maintenance = Maintenance(store, MaintenancePolicy(compact_every=3, prune_grace_s=0.0))
    assert store._lease is not None
    checks = itertools.count()

    def taken_over_after_the_first_check() -> None:
        if next(checks):
            raise LeaseLostError("writer lease s3://bucket/hydra-writer.lease was taken over by pid 7 on host other")

    monkeypatch.setattr(store._lease, "check", taken_over_after_the_first_check)
    with pytest.raises(LeaseLostError):
        maintenance.run_once()
    assert _segments(store, FUTURES, SYMBOL) == 7 and len(store.library(FUTURES).list_versions(SYMBOL)) == 7
    assert store.library(FUTURES).list_snapshots() == {}


def test_a_symbol_with_few_fragments_is_left_alone(store: Store) -> None:
    maintenance = Maintenance(store, MaintenancePolicy(compact_every=5, prune_grace_s=3600))
    maintenance.run_once()  # the day's full compaction and snapshot, on an empty store
    _append_one_row_flushes(store, 3)
    report = maintenance.run_once()
    assert report.compacted == 0 and report.pruned_versions == 0
    assert _segments(store, FUTURES, SYMBOL) == 3


def test_merges_never_rewrite_a_large_segment_for_a_few_new_rows(store: Store) -> None:
    now = {"ns": pd.Timestamp("2024-03-05 10:00", tz="UTC").value}
    maintenance = Maintenance(store, MaintenancePolicy(compact_every=3, prune_grace_s=0.0), clock=lambda: now["ns"])
    maintenance.run_once()
    writer = StreamWriter(store, flush_rows=1)
    writer.add(FUTURES, SYMBOL, _trades(0, 20_000), ["sequence"])  # one large segment (not small: ≥ MERGED_ROWS)
    writer.flush_due()
    for second in range(20_000, 20_004):
        writer.add(FUTURES, SYMBOL, _trades(second), ["sequence"])
        writer.flush_due()
    large = store.library(FUTURES)._nvs.read_index(SYMBOL).iloc[0]
    assert maintenance.run_once().compacted == 1
    index = store.library(FUTURES)._nvs.read_index(SYMBOL)
    assert list(index["end_row"] - index["start_row"]) == [20_000, 4]
    assert index.iloc[0]["content_hash"] == large["content_hash"] and index.iloc[0]["version_id"] == large["version_id"]
    assert list(restore_utc(store.library(FUTURES).read(SYMBOL).data)["sequence"]) == list(range(20_004))
    assert StreamWriter(store).watermark(FUTURES, SYMBOL) == Watermark(
        (BASE + pd.Timedelta(seconds=20_003)).value, {"[20003]": 1}
    )
    now["ns"] += DAY_NS  # the next UTC day: the daily merge leaves 20k rows alone for 4, then the snapshot
    report = maintenance.run_once()
    assert report.compacted == 0 and report.snapshots_taken == ["daily-20240305"]
    index = store.library(FUTURES)._nvs.read_index(SYMBOL)
    assert list(index["end_row"] - index["start_row"]) == [20_000, 4]
    assert index.iloc[0]["content_hash"] == large["content_hash"]


def test_daily_snapshots_pin_about_a_day_of_rows_each_not_a_copy_of_the_symbol(store: Store) -> None:
    """A symbol far below rows_per_segment (a chain, a feature) merged every day: every daily snapshot keeps the
    segments it pins, so a daily rewrite of the whole symbol would keep a copy of it per retained day (disk growing
    with the square of history); the daily merge rewrites a logarithmic number of times per row instead."""
    days = 32
    now = {"ns": pd.Timestamp("2024-03-05 10:00", tz="UTC").value}
    policy = MaintenancePolicy(compact_every=1000, prune_grace_s=0.0, keep_daily_snapshots_days=days + 1)
    maintenance = Maintenance(store, policy, clock=lambda: now["ns"])
    maintenance.run_once()  # the daemon runs through the first day (a first run takes no snapshot of the day before)
    writer = StreamWriter(store, flush_rows=1)
    for day in range(days):
        for flush in range(3):
            writer.add(FUTURES, SYMBOL, _trades(day * 30 + flush * 10, 10), ["sequence"])
            writer.flush_due()
        now["ns"] += DAY_NS
        maintenance.run_once()
    library = store.library(FUTURES)
    snapshots = library.list_snapshots(load_metadata=False)
    assert len(snapshots) == days
    pinned: dict[tuple[int, int, int], int] = {}
    for name in snapshots:
        for _, segment in library._nvs.read_index(SYMBOL, as_of=name).iterrows():
            key = (segment["version_id"], segment["content_hash"], segment["start_row"])
            pinned[key] = segment["end_row"] - segment["start_row"]
    rows = days * 30
    assert sum(pinned.values()) <= rows * (np.log2(days) + 2)  # compact_data every day: ~rows * days / 2
    index = library._nvs.read_index(SYMBOL)
    sizes = list(index["end_row"] - index["start_row"])
    assert len(sizes) <= np.log2(days) + 2 and sizes == sorted(sizes, reverse=True)  # tiers, largest first
    assert list(restore_utc(library.read(SYMBOL).data)["sequence"]) == list(range(rows))
    held = restore_utc(library.read(SYMBOL, as_of=min(snapshots)).data)  # the end of the first day
    assert list(held["sequence"]) == list(range(30))


@given(st.lists(st.integers(1, 5_000), min_size=1, max_size=40), st.integers(1, 12))
@settings(max_examples=200, deadline=None)
def test_a_merge_run_joins_only_segments_no_larger_than_twice_the_newer_ones(rows: list[int], minimum: int) -> None:
    sizes = np.array(rows)
    excluded = sizes >= 4_000
    run = merge_run(sizes, minimum, excluded)
    assert run == 0 or run >= max(minimum, 2)
    tail = sizes[len(sizes) - run :]
    assert not excluded[len(sizes) - run :].any()
    for position in range(len(tail) - 1):  # each joined segment has at most GROWTH times the rows after it
        assert tail[position] <= GROWTH * tail[position + 1 :].sum()
    if 0 < run < len(sizes):  # and the run is as long as that allows
        assert excluded[-run - 1] or sizes[-run - 1] > GROWTH * tail.sum()


def test_a_long_merge_rewrites_a_segment_of_rows_at_a_time_and_keeps_every_row(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daily merge of a day partition (11.6 M quotes) in one update held them all, and ArcticDB's copies, at
    once: the daemon's RSS peaked 2.8 GB higher. Sliced, no update holds more than a segment of rows, the store pages
    each slice touched are released before the next, and rows sharing a timestamp across two appends stay whole and
    in order."""
    library = store.library(FUTURES)
    per_append, appends = 25_000, 8
    for number in range(appends):  # the third append starts at the timestamp the second one ends at
        start = number * per_append - (number >= 2)
        frame = _trades(start, per_append).assign(sequence=np.arange(per_append) + number * per_append)
        library.append(SYMBOL, frame, metadata={"n": number})
    expected = restore_utc(library.read(SYMBOL).data)
    calls: list[object] = []
    update, release = Library.update, store.release_mapped_pages

    def counting_update(self: Library, symbol: str, data: pd.DataFrame, **kwargs: Any) -> Any:
        calls.append(len(data))
        return update(self, symbol, data, **kwargs)

    def counting_release() -> None:
        calls.append("release")
        release()

    monkeypatch.setattr(Library, "update", counting_update)
    monkeypatch.setattr(store, "release_mapped_pages", counting_release)
    now = pd.Timestamp("2024-03-05 00:10", tz="UTC").value
    maintenance = Maintenance(store, MaintenancePolicy(compact_every=100, prune_grace_s=0.0), clock=lambda: now)
    assert maintenance.run_once().compacted == 1  # the daily merge (its first run)
    segment = library.options().rows_per_segment
    assert per_append * appends == 2 * segment
    assert calls[:4] == [segment, "release", segment, "release"]  # and after the merge, before the next symbol
    assert [call for call in calls if call != "release"] == [segment, segment]
    pd.testing.assert_frame_equal(restore_utc(library.read(SYMBOL).data), expected)
    assert library.read_metadata(SYMBOL).metadata == {"n": appends - 1}


def test_a_busy_symbol_merges_once_its_appends_hold_a_large_segment_of_rows(store: Store) -> None:
    """Merged at `MERGED_ROWS` rows, not at `compact_every` appends: the merged segment is stored at the large-segment
    cost and never rewritten intraday, while the appends after it wait for their own rows."""
    maintenance = Maintenance(store, MaintenancePolicy(compact_every=100, prune_grace_s=0.0))
    maintenance.run_once()  # the day's merge and snapshot, on an empty store
    writer = StreamWriter(store, flush_rows=1)
    for start in range(0, MERGED_ROWS + 1_000, 6_000):  # three appends holding 18,000 rows
        writer.add(FUTURES, SYMBOL, _trades(start, 6_000), ["sequence"])
        writer.flush_due()
    assert maintenance.run_once().compacted == 1
    merged = store.library(FUTURES)._nvs.read_index(SYMBOL).iloc[0]
    for start in range(18_000, 18_010, 5):
        writer.add(FUTURES, SYMBOL, _trades(start, 5), ["sequence"])
        writer.flush_due()
    assert maintenance.run_once().compacted == 0  # two small appends: neither enough rows nor compact_every
    index = store.library(FUTURES)._nvs.read_index(SYMBOL)
    assert list(index["end_row"] - index["start_row"]) == [18_000, 5, 5]
    assert index.iloc[0]["content_hash"] == merged["content_hash"]
    assert list(restore_utc(store.library(FUTURES).read(SYMBOL).data)["sequence"]) == list(range(18_010))


def test_versions_superseded_within_the_grace_window_survive(store: Store) -> None:
    clock = _Clock(0.0)
    policy = MaintenancePolicy(compact_every=100, prune_grace_s=0.0)
    maintenance = Maintenance(store, policy, wall_clock=clock)
    maintenance.run_once()  # the day's full compaction and snapshot, on an empty store
    _append_one_row_flushes(store, 5)
    versions = store.library(FUTURES).list_versions(SYMBOL)
    dates = sorted(info.date.timestamp() for info in versions.values())
    # The grace window reaches back to between the writes of versions 2 and 3: only versions 0 and 1 were superseded
    # (by versions 1 and 2) longer ago than that.
    clock.now = dates[-1] + 10
    grace = clock.now - (dates[2] + dates[3]) / 2
    maintenance.policy = MaintenancePolicy(compact_every=100, prune_grace_s=grace)
    report = maintenance.run_once()
    assert report.pruned_versions == 2
    assert sorted(key.version for key in store.library(FUTURES).list_versions(SYMBOL)) == [2, 3, 4]
    clock.now = dates[-1] + grace + 1
    maintenance.run_once()
    assert [key.version for key in store.library(FUTURES).list_versions(SYMBOL)] == [4]


def _prices(start: int, rows: int) -> pd.DataFrame:
    index = pd.date_range(BASE + pd.Timedelta(seconds=start), periods=rows, freq="s", name="ts_event")
    return pd.DataFrame({"price": np.random.default_rng(start).normal(size=rows)}, index=index)


def _superseded_segment_by_segment(store: Store, symbol: str, segments: int, rows: int) -> None:
    """``segments`` large segments (never merged), then as many versions, each replacing one of them: deleting the
    versions before the last frees every original segment."""
    library = store.library(FUTURES)
    with store.symbol_lock(FUTURES, symbol):  # as a writer does: maintenance looks at the symbols written
        for number in range(segments):
            library.append(symbol, _prices(number * rows, rows))
        for number in range(segments):
            library.update(symbol, _prices(number * rows, rows) + 1.0)


def test_pruning_many_versions_touches_a_batch_of_segments_at_a_time(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting a version touches the first LMDB page of each segment it frees, and the kernel maps the cached
    pages around it: a day partition's sliced merge left ~116 versions, whose prune in one ``delete`` peaked +48 to
    +124 MB. Pruned `PRUNE_BATCH` versions at a time, oldest first, with the pages released between, a call
    touches a fraction of what one call over all of them does."""
    library, segments, rows = store.library(FUTURES), 8 * PRUNE_BATCH, MERGED_ROWS + 3_000
    lmdb_dir = store.lmdb_dir
    assert lmdb_dir is not None
    maintenance = Maintenance(store, MaintenancePolicy(compact_every=1_000, prune_grace_s=0.0))
    maintenance.run_once()  # the day's merge and snapshot, on an empty store
    for symbol in (SYMBOL, QUOTES):
        _superseded_segment_by_segment(store, symbol, segments, rows)
    store.release_mapped_pages()
    library.delete(QUOTES, versions=sorted(key.version for key in library.list_versions(QUOTES))[:-1])
    at_once = resident_bytes(lmdb_dir)
    store.release_mapped_pages()
    touched: list[int] = []
    delete = Library.delete

    def measured_delete(self: Library, symbol: str, versions: list[int]) -> None:
        before = resident_bytes(lmdb_dir)
        delete(self, symbol, versions=versions)
        touched.append(resident_bytes(lmdb_dir) - before)

    monkeypatch.setattr(Library, "delete", measured_delete)
    assert maintenance.run_once().pruned_versions == 2 * segments - 1
    assert at_once > segments * 70_000  # ~70 KB for each segment freed: its page and the cached pages around it
    assert max(touched) < at_once / 2
    assert len(touched) == -(-(2 * segments - 1) // PRUNE_BATCH)
    expected = pd.concat([_prices(number * rows, rows) + 1.0 for number in range(segments)])
    pd.testing.assert_frame_equal(restore_utc(library.read(SYMBOL).data), expected, check_freq=False)


def test_one_snapshot_per_utc_day_kept_for_the_retention_window(store: Store) -> None:
    day = pd.Timestamp("2024-03-05", tz="UTC")
    now = {"ns": day.value + 3600 * 10**9}
    maintenance = Maintenance(
        store, MaintenancePolicy(prune_grace_s=0.0, keep_daily_snapshots_days=2), clock=lambda: now["ns"]
    )
    writer = StreamWriter(store, flush_rows=1)
    taken = []
    for offset in range(5):  # day 2024-03-05 + offset: the first run of the day, then that day's row
        taken += maintenance.run_once().snapshots_taken
        taken += maintenance.run_once().snapshots_taken  # a second run the same day takes nothing
        writer.add(FUTURES, SYMBOL, _trades(offset), ["sequence"])
        writer.flush_due()
        if offset == 0:  # a researcher's own snapshot, named with a day like the daemon's: never the daemon's to delete
            store.library(FUTURES).snapshot("study-20240305")
        now["ns"] += DAY_NS
    maintenance.run_once()  # on 2024-03-10: keeps the ends of 03-08 and 03-09 (two days)
    assert taken == [daily_snapshot_name((day + pd.Timedelta(days=d)).date()) for d in range(4)]
    library = store.library(FUTURES)
    kept = sorted(library.list_snapshots(load_metadata=False))
    assert kept == [*(daily_snapshot_name((day + pd.Timedelta(days=d)).date()) for d in (3, 4)), "study-20240305"]
    assert list(restore_utc(library.read(SYMBOL, as_of="study-20240305").data)["sequence"]) == [0]
    # The end of 2024-03-08 holds the rows of 03-05..03-08 (pruning kept the version the snapshot pins).
    held = restore_utc(library.read(SYMBOL, as_of=daily_snapshot_name(pd.Timestamp("2024-03-08").date())).data)
    assert list(held["sequence"]) == [0, 1, 2, 3]


def test_the_daily_snapshot_leaves_out_the_partitions_of_later_days(store: Store) -> None:
    """At its first run after midnight the new day's partition already holds a few appends; the store at the end of
    the day that ended held none of them, and pinned they would stay beside their merged copy for the retention."""
    day = BASE.normalize()
    now = {"ns": (day + pd.Timedelta(days=1, seconds=30)).value}
    writer = StreamWriter(store, flush_rows=1)
    writer.add(FUTURES, QUOTES, _trades(0, 3), ["sequence"])  # 14:30 on day
    writer.flush_due()
    late = _trades(0, 2).set_axis(pd.DatetimeIndex([day + pd.Timedelta(days=1, seconds=s) for s in (5, 9)]))
    writer.add(FUTURES, QUOTES, late.assign(sequence=[3, 4]), ["sequence"])  # the next day's first seconds
    writer.flush_due()
    maintenance = Maintenance(store, MaintenancePolicy(), clock=lambda: now["ns"])
    now["ns"] -= 60 * 10**9  # the daemon's run a minute earlier, on the day (a first run takes none of the day before)
    maintenance.run_once()
    now["ns"] += 60 * 10**9
    report = maintenance.run_once()
    assert report.snapshots_taken == [daily_snapshot_name(day.date())]
    held = store.library(FUTURES).list_symbols(snapshot_name=daily_snapshot_name(day.date()))
    assert held == [partition_symbol(QUOTES, day.date())]


def test_a_cycle_snapshot_lasts_until_the_daily_snapshot_of_its_day_then_its_segments_go(store: Store) -> None:
    """A pipeline's cycle snapshot pins the symbols' intraday state; once the day's daily snapshot holds the store at
    the end of that day, the cycle snapshot is deleted and what only it pinned (segments merged since) is pruned."""
    today = pd.Timestamp.now(tz="UTC").normalize()  # cycle snapshots are named by wall time
    now = {"ns": (today + pd.Timedelta(hours=1)).value}
    maintenance = Maintenance(store, MaintenancePolicy(compact_every=3, prune_grace_s=0.0), clock=lambda: now["ns"])
    maintenance.run_once()  # yesterday's daily snapshot, of an empty store
    _append_one_row_flushes(store, 3)
    cycle = store.snapshot("cot", (FUTURES,))
    pinned = store.library(FUTURES).read(SYMBOL, as_of=cycle).version
    _converge(maintenance)  # the day goes on: the three appends are merged, the cycle snapshot keeps its version
    assert cycle in store.library(FUTURES).list_snapshots(load_metadata=False)
    assert pinned in [key.version for key in store.library(FUTURES).list_versions(SYMBOL)]
    now["ns"] += DAY_NS  # the day ended: its daily snapshot supersedes the cycle's
    assert maintenance.run_once().snapshots_taken == [daily_snapshot_name(today.date())]
    maintenance.run_once()
    assert list(store.library(FUTURES).list_snapshots(load_metadata=False)) == [daily_snapshot_name(today.date())]
    assert len(store.library(FUTURES).list_versions(SYMBOL)) == 1
    assert list(restore_utc(store.library(FUTURES).read(SYMBOL).data)["sequence"]) == [0, 1, 2]


def _cot_rows(weeks: int, value: float) -> pd.DataFrame:
    as_of = [pd.Timestamp("2024-01-02", tz="UTC") + pd.Timedelta(weeks=w) for w in range(weeks)]
    return pd.DataFrame({"as_of": as_of, "net": np.full(weeks, value)})


def test_point_in_time_answers_survive_compaction_and_pruning(store: Store) -> None:
    table = BitemporalTable(store.library(COT), cot_symbol("HE"), lock=store.symbol_lock(COT, cot_symbol("HE")))
    release = pd.Timestamp("2024-01-05 20:30", tz="UTC")
    for week in range(12):
        at = release + pd.Timedelta(weeks=week)
        table.record(_cot_rows(week + 1, 1.0), value_columns=["net"], available_at=at, ingested_at=at)
        if week % 3 == 2:  # a revision of the newest week, published a day later
            later = at + pd.Timedelta(days=1)
            table.record(_cot_rows(week + 1, 2.0).tail(1), value_columns=["net"], available_at=later, ingested_at=later)
    probes = [release + pd.Timedelta(days=d, hours=h) for d, h in itertools.product(range(0, 90, 3), (0, 12))]
    before = [table.point_in_time(at) for at in probes]
    _converge(Maintenance(store, MaintenancePolicy(compact_every=2, prune_grace_s=0.0)))
    assert _segments(store, COT, cot_symbol("HE")) == 1
    assert len(store.library(COT).list_versions(cot_symbol("HE"))) == 1
    for at, expected in zip(probes, before, strict=True):
        pd.testing.assert_frame_equal(table.point_in_time(at), expected)


def test_feature_writes_read_no_history_for_new_keys(store: Store) -> None:
    """A write of keys newer than everything stored looks nothing up: its cost does not depend on history."""
    features = FeatureStore(store)
    start = pd.Timestamp("2024-03-01 15:00", tz="UTC")
    for minute in range(3):
        at = start + pd.Timedelta(minutes=minute)
        frame = pd.DataFrame({"as_of": [at], "available_at": [at], "value": [float(minute)]})
        assert features.write_feature("HE", "atm_iv", frame, ingested_at=at) == 1
    library = store.library(FEATURES)
    reads: list[str] = []
    original = library.read
    library.read = lambda *a, **k: reads.append(str(a)) or original(*a, **k)  # type: ignore[method-assign]
    at = start + pd.Timedelta(minutes=5)
    new = pd.DataFrame({"as_of": [at], "available_at": [at], "value": [9.0]})
    assert features.write_feature("HE", "atm_iv", new, ingested_at=at) == 1
    assert reads == []
    resent = pd.DataFrame({"as_of": [start, at], "available_at": [start, at], "value": [0.0, 9.5]})
    assert features.write_feature("HE", "atm_iv", resent, ingested_at=at) == 1  # one revision, one unchanged
    assert len(reads) == 1


def test_a_store_of_the_previous_layout_converges_and_loses_nothing(tmp_path: Path) -> None:
    """Build what the previous version wrote — per-flush appends never compacted nor pruned, bitemporal appends
    without bounds metadata, trades in one whole symbol — then open it with today's code: maintenance converges it;
    writes continue exactly, the trades into day partitions after the whole symbol."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=1GB"
    cot = cot_symbol("HE")
    release = pd.Timestamp("2024-01-05 20:30", tz="UTC")
    with Store.open(uri, writer=True) as old:
        futures, cot_library = old.library(FUTURES), old.library(COT)
        for second in range(40):
            watermark = Watermark((BASE + pd.Timedelta(seconds=second)).value, {f"[{second}]": 1})
            futures.append(SYMBOL, _trades(second), metadata=watermark.to_metadata(["sequence"]))
            futures.append(QUOTES, _trades(second), metadata=watermark.to_metadata(["sequence"]))
        for week in range(30):
            rows = _cot_rows(1, float(week)).assign(
                as_of=pd.Timestamp("2024-01-02", tz="UTC") + pd.Timedelta(weeks=week)
            )
            at = release + pd.Timedelta(weeks=week)
            rows = rows.assign(available_at=at, revision=0)
            rows.index = pd.DatetimeIndex([at], name="ingested_at")
            cot_library.append(cot, rows)
    with Store.open(uri, writer=True) as store:
        table = BitemporalTable(store.library(COT), cot, lock=store.symbol_lock(COT, cot))
        probes = [release + pd.Timedelta(weeks=w, days=1) for w in range(0, 30, 4)]
        before = [table.point_in_time(at) for at in probes]
        _converge(Maintenance(store, MaintenancePolicy(compact_every=10, prune_grace_s=0.0)))
        for symbol in (SYMBOL, QUOTES):
            assert _segments(store, FUTURES, symbol) == 1 and len(store.library(FUTURES).list_versions(symbol)) == 1
        assert _segments(store, COT, cot) == 1
        assert len(store.library(COT).list_versions(cot)) == 1
        for at, expected in zip(probes, before, strict=True):
            pd.testing.assert_frame_equal(table.point_in_time(at), expected)
        writer = StreamWriter(store, flush_rows=1)
        assert writer.add(FUTURES, SYMBOL, _trades(38, 4), ["sequence"]) == 2  # 38, 39 were stored
        assert writer.add(FUTURES, QUOTES, _trades(38, 4), ["sequence"]) == 2
        writer.flush_due()
        assert list(restore_utc(store.library(FUTURES).read(SYMBOL).data)["sequence"]) == list(range(42))
        library = store.library(FUTURES)
        assert stream_symbols(library, QUOTES) == [QUOTES, partition_symbol(QUOTES, BASE.date())]
        assert list(restore_utc(read_stream(library, QUOTES).data)["sequence"]) == list(range(42))
        assert len(library.read(QUOTES).data) == 40  # the whole symbol is never written again
        later = release + pd.Timedelta(weeks=30)
        revised = _cot_rows(1, 99.0).assign(as_of=pd.Timestamp("2024-01-02", tz="UTC") + pd.Timedelta(weeks=29))
        written = table.record(revised, value_columns=["net"], available_at=later, ingested_at=later)
        assert written["revision"].tolist() == [1]
        assert table.point_in_time(later)["net"].iloc[-1] == 99.0


def test_pruning_folds_the_version_map(store: Store) -> None:
    """ArcticDB writes a key per version and per deletion, which would grow with appends; every prune folds them."""
    now = {"ns": pd.Timestamp("2024-03-05 10:00", tz="UTC").value}
    maintenance = Maintenance(store, MaintenancePolicy(compact_every=1000, prune_grace_s=0.0), clock=lambda: now["ns"])
    maintenance.run_once()
    _append_one_row_flushes(store, 40)

    def version_keys() -> int:
        sizes = store.library(FUTURES).admin_tools().get_sizes_for_symbol(SYMBOL)
        return next(size.count for kind, size in sizes.items() if kind.name == "VERSION")

    assert version_keys() >= 40
    assert maintenance.run_once().pruned_versions == 39
    assert version_keys() <= 3
    assert list(restore_utc(store.library(FUTURES).read(SYMBOL).data)["sequence"]) == list(range(40))


def test_each_snapshot_is_read_once_not_for_every_symbol_on_every_run(store: Store) -> None:
    """Which versions snapshots pin is read from each snapshot once: a version list with its snapshots reads every
    snapshot kept for every symbol, on every run (slower with each day partition and snapshot)."""
    now = {"ns": pd.Timestamp("2024-03-05 10:00", tz="UTC").value}
    maintenance = Maintenance(store, MaintenancePolicy(compact_every=2, prune_grace_s=0.0), clock=lambda: now["ns"])
    writer = StreamWriter(store, flush_rows=1)
    library = store.library(FUTURES)
    calls: list[dict[str, object]] = []
    original = library.list_versions
    library.list_versions = lambda *a, **k: calls.append(k) or original(*a, **k)  # type: ignore[method-assign]
    for day in range(3):
        for run in range(2):
            for market in ("HE", "LE", "ZC"):
                writer.add(FUTURES, f"{market}.ohlcv-1m", _trades(day * 10 + run * 2, 2), ["sequence"])
            writer.flush_all()
            maintenance.run_once()
        now["ns"] += DAY_NS
    read = [str(call["snapshot"]) for call in calls if call.get("snapshot") is not None]
    assert len(read) == len(set(read)) == len(library.list_snapshots(load_metadata=False)) == 2  # none of 03-04
    assert all(call.get("skip_snapshots") for call in calls)
    assert all(len(restore_utc(library.read(f"{m}.ohlcv-1m").data)) == 12 for m in ("HE", "LE", "ZC"))


def test_a_users_snapshot_taken_again_under_its_name_keeps_the_version_it_now_pins(store: Store) -> None:
    """Only the daemon's snapshots are read once: a researcher who refreshes a snapshot of a fixed name (deletes it,
    takes it again) between two runs pins another version, which the next run must not delete."""
    now = pd.Timestamp("2024-03-05 10:00", tz="UTC").value
    maintenance = Maintenance(store, MaintenancePolicy(compact_every=1000, prune_grace_s=0.0), clock=lambda: now)
    maintenance.run_once()  # the day's daily snapshot, before anything is written: it pins nothing
    writer = StreamWriter(store, flush_rows=1)
    library = store.library(FUTURES)
    writer.add(FUTURES, SYMBOL, _trades(0), ["sequence"])
    writer.flush_due()
    library.snapshot("study")  # pins version 0
    maintenance.run_once()
    for second in (1, 2):
        writer.add(FUTURES, SYMBOL, _trades(second), ["sequence"])
        writer.flush_due()
    library.delete_snapshot("study")
    library.snapshot("study")  # the same name, now pinning version 2
    writer.add(FUTURES, SYMBOL, _trades(3), ["sequence"])
    writer.flush_due()
    maintenance.run_once()
    live = [key.version for key, info in library.list_versions(SYMBOL).items() if not info.deleted]
    assert sorted(live) == [2, 3]
    assert list(restore_utc(library.read(SYMBOL, as_of=2).data)["sequence"]) == [0, 1, 2]


def test_the_daily_pass_keeps_the_version_map_as_small_as_the_versions_kept(store: Store) -> None:
    """A folded version map still holds every version ever written (~30 B each, decoded by every cold read): a
    symbol appended once a minute would carry ~350,000 a year. The daily pass rebuilds it from the live versions and
    those the daily snapshots pin; numbering continues after the latest, and what a snapshot pins stays readable."""
    now = {"ns": pd.Timestamp("2024-03-05 10:00", tz="UTC").value}
    policy = MaintenancePolicy(compact_every=1000, prune_grace_s=0.0, keep_daily_snapshots_days=30)
    maintenance = Maintenance(store, policy, clock=lambda: now["ns"])
    writer = StreamWriter(store, flush_rows=1)
    library = store.library(FUTURES)

    def version_map_bytes() -> int:
        sizes = library.admin_tools().get_sizes_for_symbol(SYMBOL)
        return next(size.bytes_compressed for kind, size in sizes.items() if kind.name == "VERSION")

    after_each_day = []
    for day in range(4):
        for second in range(day * 100, day * 100 + 100):
            writer.add(FUTURES, SYMBOL, _trades(second), ["sequence"])
            writer.flush_due()
        maintenance.run_once()  # prunes the day's versions (folds their keys)
        now["ns"] += DAY_NS
        maintenance.run_once()  # the daily pass: snapshot, rebuild
        after_each_day.append(version_map_bytes())
    assert after_each_day[-1] <= after_each_day[0] + 200, after_each_day  # 300 more versions written: ~9 KB folded
    assert max(library.list_versions(SYMBOL)).version >= 400  # no version number reused
    first_day = daily_snapshot_name(pd.Timestamp("2024-03-05").date())
    assert list(restore_utc(library.read(SYMBOL, as_of=first_day).data)["sequence"]) == list(range(100))
    assert list(restore_utc(library.read(SYMBOL).data)["sequence"]) == list(range(400))


def test_the_daily_pass_forgets_the_version_cache_and_nothing_else_does(store: Store) -> None:
    """ArcticDB caches the version map of every symbol it ever looked up (a new day partition per stream each day):
    the daily pass drops the cache, after rebuilding the maps it reloads; intraday runs keep it (appends reuse it)."""
    now = {"ns": pd.Timestamp("2024-03-05 10:00", tz="UTC").value}
    maintenance = Maintenance(store, MaintenancePolicy(prune_grace_s=0.0), clock=lambda: now["ns"])
    forgotten = []
    original = store.forget_cached_versions
    store.forget_cached_versions = lambda: forgotten.append(now["ns"]) or original()  # type: ignore[method-assign]
    writer = StreamWriter(store, flush_rows=1)
    for day in range(3):
        for run in range(3):
            writer.add(FUTURES, SYMBOL, _trades(day * 10 + run), ["sequence"])
            writer.flush_due()
            maintenance.run_once()
        now["ns"] += DAY_NS
    assert len(forgotten) == 3  # the first run of each day
    assert list(restore_utc(store.library(FUTURES).read(SYMBOL).data)["sequence"]) == [0, 1, 2, 10, 11, 12, 20, 21, 22]


def test_a_reader_listing_the_symbols_writes_nothing(store: Store, store_uri: str) -> None:
    """ArcticDB compacts a library's symbol list (a write) at the first listing that finds it uncompacted or long:
    maintenance compacts it wherever a symbol appeared, so a Reader's listing never has to (here: the features
    library, created after maintenance first listed the store)."""
    maintenance = Maintenance(store, MaintenancePolicy())
    maintenance.run_once()
    at = pd.Timestamp("2024-03-01 15:00", tz="UTC")
    frame = pd.DataFrame({"as_of": [at], "available_at": [at], "value": [1.0]})
    FeatureStore(store).write_feature("HE", "atm_iv", frame, ingested_at=at)
    maintenance.run_once()
    tool = store.library(FEATURES)._nvs.library_tool()
    keys = sorted(str(key) for key in tool.find_keys(KeyType.SYMBOL_LIST))
    with Reader(store_uri) as reader:
        assert reader.features("HE") == ["atm_iv"]
    assert sorted(str(key) for key in tool.find_keys(KeyType.SYMBOL_LIST)) == keys


def test_the_writer_compacts_a_symbol_list_grown_long_before_a_reader_would(store: Store) -> None:
    """A listing compacts a symbol list longer than a random 300-700 keys: one new symbol a day per stream would
    reach that in months, and a Reader's listing as likely as the daemon's would find it due. The writer compacts
    at 100 (`WRITER_ARCTICDB_CONFIG`), listing each library that gained a symbol."""
    maintenance = Maintenance(store, MaintenancePolicy())
    _append(store, "HE.s0")
    maintenance.run_once()  # its listing compacted the new library's list; each new symbol adds a key to it
    tool = store.library(FUTURES)._nvs.library_tool()
    for number in range(1, 60):
        _append(store, f"HE.s{number}")
    maintenance.run_once()
    assert len(tool.find_keys(KeyType.SYMBOL_LIST)) == 60  # not yet due
    for number in range(60, 110):
        _append(store, f"HE.s{number}")
    maintenance.run_once()
    assert len(tool.find_keys(KeyType.SYMBOL_LIST)) == 1


def _append(store: Store, symbol: str) -> None:
    with store.symbol_lock(FUTURES, symbol):
        store.library(FUTURES).append(symbol, _trades(0))


def test_compacting_a_symbol_list_does_not_stall_the_other_threads(lmdb_uri: str) -> None:
    """ArcticDB's storage lock sleeps 1 s by default (for object stores) holding the GIL: every new symbol's
    compaction stalled the daemon's event loop that long. A writer waits 10 ms (`WRITER_ARCTICDB_CONFIG`)."""
    gaps: list[float] = []
    done = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    set_config_int("StorageLock.WaitMs", 1_000)  # ArcticDB's default (the suite waits 10 ms: see conftest)
    try:
        with Store.open(lmdb_uri, writer=True) as store:
            maintenance = Maintenance(store, MaintenancePolicy())
            maintenance.run_once()
            _append_one_row_flushes(store, 1)  # a symbol appears: the next run compacts the library's symbol list
            ticker = threading.Thread(target=tick)
            ticker.start()
            try:
                maintenance.run_once()
            finally:
                done.set()
                ticker.join()
            assert len(store.library(FUTURES)._nvs.library_tool().find_keys(KeyType.SYMBOL_LIST)) == 1
    finally:
        set_config_int("StorageLock.WaitMs", STORAGE_LOCK_WAIT_MS)
    assert max(gaps) < 0.5


RESTART_DAY = pd.Timestamp("2024-03-05", tz="UTC")


def test_a_restart_does_not_take_yesterdays_daily_snapshot_of_what_was_written_today(tmp_path: Path) -> None:
    """A library created after midnight (first feature rows) must not get daily-D from a process restarted on D+1:
    it would hold rows ingested after D ended (found by a review helper)."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=256MB"
    now = {"ns": (RESTART_DAY + pd.Timedelta(hours=10)).value}
    end_of_day = RESTART_DAY + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    with Store.open(uri, writer=True) as store:
        first = Maintenance(store, MaintenancePolicy(prune_grace_s=0.0), clock=lambda: now["ns"])
        writer = StreamWriter(store, flush_rows=1)
        bars = pd.DataFrame(
            {"sequence": [0]}, index=pd.DatetimeIndex([RESTART_DAY + pd.Timedelta(hours=9)], name="ts_event")
        )
        writer.add(FUTURES, "HE.ohlcv-1m", bars, ["sequence"])
        writer.flush_due()
        first.run_once()
        now["ns"] = (RESTART_DAY + pd.Timedelta(days=1, minutes=5)).value  # D ended: daily-D of the futures library
        assert first.run_once().snapshots_taken == [daily_snapshot_name(RESTART_DAY.date())]
        # D+1 10:00: the first feature rows ever (a backfill of D's chain: available at D 12:00, ingested now).
        ingested = RESTART_DAY + pd.Timedelta(days=1, hours=10)
        at = RESTART_DAY + pd.Timedelta(hours=12)
        frame = pd.DataFrame({"as_of": [at], "available_at": [at], "value": [1.5]})
        FeatureStore(store).write_feature("HE", "atm_iv", frame, ingested_at=ingested)
        now["ns"] = (RESTART_DAY + pd.Timedelta(days=1, hours=15)).value
        first.run_once()
        assert daily_snapshot_name(RESTART_DAY.date()) not in store.library(FEATURES).list_snapshots(
            load_metadata=False
        )
        # D+1 15:00: the daemon restarts (a deploy); the new process's first maintenance run.
        restarted = Maintenance(store, MaintenancePolicy(prune_grace_s=0.0), clock=lambda: now["ns"])
        restarted.run_once()
        library = store.library(FEATURES)
        name = daily_snapshot_name(RESTART_DAY.date())
        if name in library.list_snapshots(load_metadata=False):
            held = restore_utc(library.read("HE.atm_iv", as_of=name).data)
            assert (held.index <= end_of_day).all(), f"{name} holds rows ingested after D ended:\n{held}"
    with Reader(
        uri, as_of_snapshot=RESTART_DAY.date()
    ) as then:  # what a researcher sees as "the store at the end of D"
        try:
            known = then.feature("HE", "atm_iv", at=end_of_day)
        except (LookupError, NoDataFoundException):  # the features library held nothing at the end of D
            return
        assert known.empty, known


def test_a_process_started_after_a_day_ended_takes_no_snapshot_of_that_day(tmp_path: Path) -> None:
    """The daemon stops on D and starts again on D+1 09:00; its COT cycle stores the week released on D (available
    then, ingested now). daily-D would hold that row, which the store did not hold at the end of D: the restarted
    process takes no daily-D, and the next day's snapshot as usual (found by a review helper)."""
    uri = f"lmdb://{tmp_path / 'arctic'}?map_size=256MB"
    release = RESTART_DAY + pd.Timedelta(hours=20, minutes=30)
    now = {"ns": (RESTART_DAY + pd.Timedelta(hours=12)).value}
    with Store.open(uri, writer=True) as store:
        table = cot_table(store, "HE")
        week = pd.DataFrame({"as_of": [RESTART_DAY - pd.Timedelta(days=10)], "open_interest_all": [1.0]})
        before = release - pd.Timedelta(days=7)
        table.record(week, value_columns=["open_interest_all"], available_at=before, ingested_at=before)
        Maintenance(store, MaintenancePolicy(prune_grace_s=0.0), clock=lambda: now["ns"]).run_once()  # then stops
        restarted_at = RESTART_DAY + pd.Timedelta(days=1, hours=9)
        late = week.assign(as_of=RESTART_DAY - pd.Timedelta(days=3), open_interest_all=2.0)
        table.record(late, value_columns=["open_interest_all"], available_at=release, ingested_at=restarted_at)
        now["ns"] = (restarted_at + pd.Timedelta(minutes=1)).value
        restarted = Maintenance(store, MaintenancePolicy(prune_grace_s=0.0), clock=lambda: now["ns"])
        with capture_logs() as events:
            assert restarted.run_once().snapshots_taken == []
        assert [e["day"] for e in events if e["event"] == "store.daily_snapshot_skipped"] == ["2024-03-05"]
        now["ns"] = (RESTART_DAY + pd.Timedelta(days=2, minutes=1)).value
        assert restarted.run_once().snapshots_taken == [
            daily_snapshot_name((RESTART_DAY + pd.Timedelta(days=1)).date())
        ]
    with pytest.raises(LookupError, match="no snapshot 'daily-20240305'"):
        Reader(uri, as_of_snapshot=RESTART_DAY.date())
