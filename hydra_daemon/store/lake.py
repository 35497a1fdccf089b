"""Export ArcticDB symbols to a hive-partitioned, zstd-compressed Parquet lake, with a manifest per dataset.

Layout: ``<lake_dir>/<library>/<symbol>/date=YYYY-MM-DD/part-0.parquet`` plus ``<symbol>/_manifest.json``; each
symbol directory is one dataset. A day-partitioned stream (``HE.mbp-1``, stored as ``HE.mbp-1.<YYYY-MM-DD>``) is one
dataset named after the stream, its lake partitions being the same UTC days. The ``date`` partition column reads back
as a date with ``polars.scan_parquet(root / "**/*.parquet", hive_partitioning=True)``, DuckDB's
``read_parquet('<root>/**/*.parquet', hive_partitioning = true)`` and, in pyarrow, only when the partitioning is
given its type: ``pyarrow.dataset.dataset(root, format="parquet", partitioning=PARTITIONING)`` (`PARTITIONING`
below; plain ``partitioning="hive"`` reads the dates as strings). Read through the ``**/*.parquet`` glob: polars
given the bare directory refuses the ``_manifest.json`` beside the partitions (pyarrow skips ``_``/``.`` files).

Partition date (UTC calendar day):
- market data (ohlcv, mbp-1, chain snapshots, ...): the date of the Arctic index value;
- bitemporal tables (columns ``as_of``, ``available_at``, ``revision``, ``ingested_at``): the date of ``as_of``, the
  day the fact is about, so a backtest prunes partitions by the period it studies. Every revision of that day's facts
  goes into the partition; the point-in-time selection stays the reader's job (``available_at`` is kept).

Files carry the Arctic index as a column (its name, or ``ts_index`` if unnamed) and every timestamp as
``timestamp[ns, tz=UTC]``; the ``date`` column comes from the directory name only.

Publishing is atomic: partitions are written under ``<lake_dir>/.staging/<uuid>`` (same filesystem, outside every
dataset root, so scans never see half-written files), made durable (one ``syncfs`` for all of a symbol's new days),
then moved into place with ``os.replace`` and the dataset directory fsynced. A new partition is one directory
rename; an existing one is replaced by renaming the new ``part-0.parquet`` over the old file, so readers see the old
or the new file and never a missing partition.
Re-exporting the same rows writes identical content (idempotent). A day with no rows writes nothing and leaves an
existing partition alone. A process killed mid-export can leave a directory under ``.staging``, never anything inside
a dataset.

``_manifest.json`` (see `Manifest`) lists every partition (rows, min/max time, the ArcticDB version read), the
schema, and the lake watermark the daemon's exporter resumes from (`export_due`). It is rewritten the same way
(staged, fsynced, renamed) after the partitions it describes are published, under a per-dataset ``flock`` (in
``<lake_dir>/.locks``) so the daemon's exporter and a manual ``hydra-daemon export`` never lose each other's
entries. A crash after a partition's rename and before the manifest's leaves the watermark behind it: the next run
publishes that day again — identical content over the same path — so a day is never half there and never twice.

Sync API: call from a worker thread (``anyio.to_thread.run_sync``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import itertools
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import structlog
from arcticdb import QueryBuilder
from arcticdb.version_store.library import Library

from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal import BITEMPORAL_COLUMNS
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.partitions import edge_ns, read_stream_slices, stream_symbols
from hydra_daemon.store.symbols import COT_PANEL, LIBRARIES, is_partitioned, stream_of

log = structlog.get_logger()
_LIBC = ctypes.CDLL(None, use_errno=True)

PART_FILE = "part-0.parquet"
STAGING_DIR = ".staging"
LOCKS_DIR = ".locks"
MANIFEST = "_manifest.json"
MANIFEST_FORMAT = 1
PARTITION_COLUMN = "date"
UNNAMED_INDEX = "ts_index"
ROW_GROUP_ROWS = 65_536
"""Rows per Parquet row group: a day is written a group at a time (a day of quotes, 11.6 M at 140 a second, held
whole took ~4 GB; groups of 262,144 rows took ~40 MB more than these); large enough for column statistics to skip
groups and for scans to stay sequential."""
PARTITIONING = ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.date32())]), flavor="hive")
"""The lake's partitioning for ``pyarrow.dataset.dataset(root, format="parquet", partitioning=PARTITIONING)``:
``date`` comes back as ``date32``."""


@dataclass(frozen=True)
class PartitionInfo:
    """One published partition: its rows, the first and last value of its time column (UTC ISO), and the ArcticDB
    version of the symbol it was read from."""

    rows: int
    min_time: str
    max_time: str
    source_version: int


@dataclass(frozen=True)
class LakeWatermark:
    """Where the daemon's exporter resumes: every row whose index is at or before `index_through` (UTC ns; the
    index is event time for market data, ``ingested_at`` for bitemporal tables) has been looked at, and the days it
    touched are published unless listed in `pending_days` (not complete yet). `rows_at_edge`: how many rows of a
    bitemporal table were indexed exactly at `index_through` then (a later write may add rows at that same
    ``ingested_at``: they are published when the count grows)."""

    index_through: int | None = None
    pending_days: tuple[date, ...] = ()
    rows_at_edge: int = 0


@dataclass(frozen=True)
class Manifest:
    """The content of a dataset's ``_manifest.json``."""

    library: str
    symbol: str
    time_column: str | None = None
    schema: tuple[tuple[str, str], ...] = ()
    partitions: dict[date, PartitionInfo] = field(default_factory=dict)
    source_version: int | None = None
    watermark: LakeWatermark = LakeWatermark()

    @property
    def rows(self) -> int:
        return sum(info.rows for info in self.partitions.values())

    def to_json(self) -> dict[str, Any]:
        infos = self.partitions.values()
        return {
            "format": MANIFEST_FORMAT,
            "library": self.library,
            "symbol": self.symbol,
            "partition_column": {"name": PARTITION_COLUMN, "type": "date32"},
            "time_column": self.time_column,
            "schema": [{"name": name, "type": kind} for name, kind in self.schema],
            "rows": self.rows,
            "min_time": min((i.min_time for i in infos), default=None),
            "max_time": max((i.max_time for i in infos), default=None),
            "source_version": self.source_version,
            "partitions": {day.isoformat(): vars(self.partitions[day]) for day in sorted(self.partitions)},
            "watermark": {
                "index_through": _iso_ns(self.watermark.index_through),
                "pending_days": [day.isoformat() for day in self.watermark.pending_days],
                "rows_at_edge": self.watermark.rows_at_edge,
            },
            "updated_at": pd.Timestamp.now(tz="UTC").isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"lake manifest format {data.get('format')!r} is not {MANIFEST_FORMAT}")
        mark = data["watermark"]
        through = mark["index_through"]
        return cls(
            library=data["library"],
            symbol=data["symbol"],
            time_column=data["time_column"],
            schema=tuple((column["name"], column["type"]) for column in data["schema"]),
            partitions={date.fromisoformat(d): PartitionInfo(**info) for d, info in data["partitions"].items()},
            source_version=data["source_version"],
            watermark=LakeWatermark(
                None if through is None else pd.Timestamp(through).value,
                tuple(date.fromisoformat(d) for d in mark["pending_days"]),
                int(mark.get("rows_at_edge", 0)),  # absent before: the edge's days are published once more
            ),
        )


@dataclass(frozen=True)
class _Day:
    """One day's rows as they are read from ArcticDB (Arrow tables, see `_to_arrow`), each with the symbol version it
    came from: a day of quotes is read and written a slice at a time, never held whole."""

    day: date
    reads: Iterable[tuple[pa.Table, int]]


def read_manifest(dataset: Path) -> Manifest | None:
    """The dataset's manifest, or None if it has none yet."""
    try:
        text = (dataset / MANIFEST).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return Manifest.from_json(json.loads(text))


def export_day(library: Library, library_name: str, symbol: str, day: date, lake_dir: Path) -> Path | None:
    """Export `symbol`'s rows for the UTC `day`; the partition directory written, or None if the day has no rows."""
    paths = export_range(library, library_name, symbol, day, day, lake_dir)
    return paths[0] if paths else None


def export_range(
    library: Library,
    library_name: str,
    symbol: str,
    start: date,
    end: date,
    lake_dir: Path,
    checkpoint: Callable[[], None] = lambda: None,
) -> list[Path]:
    """Export every UTC day from `start` to `end` (inclusive); the partition directories written, in date order.

    The manifest's partitions are updated; its watermark is the daemon's and stays as it was. `checkpoint()` runs
    before each day and between a day's reads (`export_due`)."""
    if end < start:
        raise ValueError(f"export of {library_name}/{symbol}: end {end} is before start {start}")
    dataset = dataset_root(lake_dir, library_name, symbol)
    _require_symbol(library, library_name, symbol)
    with _dataset_lock(lake_dir, library_name, symbol):
        manifest = read_manifest(dataset) or Manifest(library_name, symbol)
        days = _read_days(library, symbol, _days(start, end), checkpoint)
        manifest, written = _publish_days(manifest, days, dataset, lake_dir)
        if written:
            _write_manifest(manifest, dataset, lake_dir)
    return written


def export_due(
    library: Library,
    library_name: str,
    symbol: str,
    lake_dir: Path,
    complete_through: date,
    checkpoint: Callable[[], None] = lambda: None,
) -> list[Path]:
    """Publish what `symbol` gained since the dataset's watermark, for the days up to `complete_through` (days
    after it stay pending until they are complete); the partitions written. Idempotent and resumable: the manifest,
    with the new watermark, is published after the partitions it lists. `checkpoint()` runs before each day and
    between a day's reads (it may raise to stop: the manifest is then left as it was and the next run publishes
    those days again)."""
    dataset = dataset_root(lake_dir, library_name, symbol)
    with _dataset_lock(lake_dir, library_name, symbol):
        manifest = read_manifest(dataset) or Manifest(library_name, symbol)
        through, at_edge, touched = _touched_days(library, symbol, manifest.watermark)
        wanted = sorted(set(manifest.watermark.pending_days) | touched)
        due = [day for day in wanted if day <= complete_through]
        mark = LakeWatermark(through, tuple(day for day in wanted if day > complete_through), at_edge)
        if mark == manifest.watermark and not due:
            return []
        days = _read_days(library, symbol, due, checkpoint)
        manifest, written = _publish_days(manifest, days, dataset, lake_dir)
        _write_manifest(replace(manifest, watermark=mark), dataset, lake_dir)
    return written


def export_store_due(
    store: Store,
    lake_dir: Path,
    complete_through: date,
    checkpoint: Callable[[], None] = lambda: None,
    until: float | None = None,
) -> list[Path]:
    """`export_due` for every symbol of every library in `store` (market data first); the partitions written.

    With `until` (a `time.monotonic()` instant) no further symbol is started after it once something was published:
    a long catch-up (years of COT history) is spread over several calls, each starting again with the market data,
    so newly complete days of quotes and bars are not held behind it; symbols already done are cheap no-ops. Between
    reads, what they left resident goes (`_release_reads`)."""

    def paced() -> None:
        checkpoint()
        _release_reads(store)

    written: list[Path] = []
    try:
        for library_name in LIBRARIES:
            if not store.has_library(library_name):
                continue
            library = store.library(library_name)
            for symbol in sorted({stream_of(symbol) for symbol in library.list_symbols()} - {COT_PANEL}):
                if until is not None and written and time.monotonic() > until:
                    return written
                checkpoint()
                written.extend(export_due(library, library_name, symbol, lake_dir, complete_through, paced))
        return written
    finally:
        _release_arrow_memory()  # what the last day's writes freed


def export_from_store(uri: str, library_name: str, symbol: str, start: date, end: date, lake_dir: Path) -> list[Path]:
    """The UTC days [start, end) — end EXCLUSIVE, as every CLI range — of `symbol` exported from the store at `uri`,
    opened read-only (works beside a running daemon; for `hydra-daemon export`). What each read left resident goes
    before the next (`_release_reads`)."""
    if end <= start:
        raise ValueError(f"export of {library_name}/{symbol}: end {end} must be after start {start} (end is exclusive)")
    with Store.open(uri, writer=False) as store:
        library = store.library(library_name)
        last = end - timedelta(days=1)
        return export_range(library, library_name, symbol, start, last, lake_dir, partial(_release_reads, store))


def _release_reads(store: Store) -> None:
    """Drop what a read left resident before the next: the store pages it touched (`Store.release_mapped_pages`; a
    day of quotes touches ~500 MB of them) and what Arrow's allocator freed (`_release_arrow_memory`)."""
    store.release_mapped_pages()
    _release_arrow_memory()


def _release_arrow_memory() -> None:
    """Return to the OS what Arrow's allocator (mimalloc) freed and keeps resident: exporting a day of 11.6 M quotes
    peaked 25–55 MB higher when this ran only at the end."""
    pa.default_memory_pool().release_unused()


def dataset_root(lake_dir: Path, library_name: str, symbol: str) -> Path:
    """The directory holding one symbol's dataset; rejects names that would escape the lake or hide from scans."""
    for what, name in (("library", library_name), ("symbol", symbol)):
        if not name or "/" in name or "\\" in name or name.startswith((".", "_")):
            raise ValueError(f"lake: {what} name {name!r} cannot be a directory name (no '/', no leading '.' or '_')")
    return lake_dir / library_name / symbol


def _require_symbol(library: Library, library_name: str, symbol: str) -> None:
    if not stream_symbols(library, symbol):
        held = ", ".join(sorted({stream_of(s) for s in library.list_symbols()})[:20]) or "nothing yet"
        raise LookupError(f"export: no symbol {symbol!r} in library {library_name!r} (it holds: {held})")


def _touched_days(library: Library, symbol: str, mark: LakeWatermark) -> tuple[int | None, int, set[date]]:
    """The symbol's newest index value, how many rows of a bitemporal table are indexed at it, and the partition days
    of the rows indexed after ``mark.index_through`` (all rows if None): for market data every day between the first
    such row and the last, for bitemporal tables the ``as_of`` days of those rows, and of the rows at
    ``index_through`` when more are there than the mark counted (`BitemporalTable.record` may write two transactions
    at one ``ingested_at``)."""
    after_ns = mark.index_through
    last = edge_ns(library, symbol, tail=True)
    if last is None or (after_ns is not None and last < after_ns):
        return after_ns, mark.rows_at_edge, set()
    if _is_bitemporal(library, symbol):
        since = None if after_ns is None else pd.Timestamp(after_ns, tz="UTC")
        rows = restore_utc(library.read(symbol, date_range=(since, None), columns=["as_of"]).data)
        index = pd.DatetimeIndex(rows.index).asi8
        edge = index == after_ns
        fresh = rows["as_of"] if int(edge.sum()) > mark.rows_at_edge else rows["as_of"][~edge]
        return last, int((index == last).sum()), set(fresh.dt.date)
    if after_ns is not None and last == after_ns:
        return after_ns, 0, set()
    first = edge_ns(library, symbol, tail=False) if after_ns is None else after_ns + 1
    assert first is not None
    return last, 0, set(_days(pd.Timestamp(first, tz="UTC").date(), pd.Timestamp(last, tz="UTC").date()))


def _read_days(
    library: Library, symbol: str, days: Iterable[date], checkpoint: Callable[[], None] = lambda: None
) -> Iterator[_Day]:
    """Each of `days` with its rows, read as they are written (`_publish_days` skips a day without rows);
    `checkpoint()` runs before each day and after each read of market data."""
    wanted = sorted(set(days))
    if not wanted:
        return
    if _is_bitemporal(library, symbol):
        for item in _bitemporal_days(library, symbol, wanted[0], wanted[-1]):
            if item.day in wanted:
                checkpoint()
                yield item
        return
    rows = library.options().rows_per_segment
    for day in wanted:
        checkpoint()
        first = pd.Timestamp(day, tz="UTC")
        reads = read_stream_slices(library, symbol, (first, first + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")), rows)
        yield _Day(day, _arrow_reads(reads, checkpoint))


def _arrow_reads(
    reads: Iterable[tuple[pd.DataFrame, int]], checkpoint: Callable[[], None]
) -> Iterator[tuple[pa.Table, int]]:
    """Each read as Arrow; the frame is not held while the table is written (`map` keeps no reference to it)."""
    for item in map(_arrow_read, reads):
        yield item
        checkpoint()


def _arrow_read(read: tuple[pd.DataFrame, int]) -> tuple[pa.Table, int]:
    return _to_arrow(read[0]), read[1]


def _publish_days(
    manifest: Manifest, days: Iterable[_Day], dataset: Path, lake_dir: Path
) -> tuple[Manifest, list[Path]]:
    """Publish each day's partition; the manifest describing them too, and the partition directories written.

    Every day is staged first (one staging directory, outside the dataset), then made durable with one `syncfs` of
    the lake's filesystem — not an fsync per file and directory, which made a catch-up of years of weekly COT rows
    take minutes — then renamed into place, and the dataset directory fsynced once."""
    partitions = dict(manifest.partitions)
    with _staging_dir(lake_dir) as staging:
        staged: list[tuple[date, Path]] = []
        for item in days:
            day_dir = staging / f"{PARTITION_COLUMN}={item.day.isoformat()}"
            day_dir.mkdir()
            part = _write_part(item.reads, day_dir / PART_FILE)
            if part is None:
                day_dir.rmdir()
                continue
            info, schema = part
            staged.append((item.day, day_dir))
            partitions[item.day] = info
            columns = tuple((f.name, str(f.type)) for f in schema)
            time_column = _time_column(schema.names)
            manifest = replace(manifest, time_column=time_column, schema=columns, source_version=info.source_version)
        manifest = replace(manifest, partitions=partitions)
        written = _move_into_place(staged, manifest, dataset) if staged else []
    return manifest, written


def _move_into_place(staged: list[tuple[date, Path]], manifest: Manifest, dataset: Path) -> list[Path]:
    """Make the staged partitions durable, rename each into `dataset` (a new day is one directory rename; an
    existing one gets its file replaced, so readers see the old or the new file, never a missing partition)."""
    _sync_filesystem(staged[0][1])
    _make_dirs_durable(dataset)
    written = []
    for day, day_dir in staged:
        target = dataset / day_dir.name
        try:
            os.replace(day_dir, target)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            os.replace(day_dir / PART_FILE, target / PART_FILE)
            _fsync_path(target)
        written.append(target)
        rows = manifest.partitions[day].rows
        log.info(
            "lake.partition_published", library=manifest.library, symbol=manifest.symbol, day=day.isoformat(), rows=rows
        )
    _fsync_path(dataset)
    return written


def _sync_filesystem(path: Path) -> None:
    """Flush the filesystem holding `path` to disk (Linux `syncfs`; `sync` elsewhere)."""
    syncfs = getattr(_LIBC, "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs({path}) failed: {os.strerror(code)}")
    finally:
        os.close(fd)


def _time_column(names: list[str]) -> str:
    """The column a partition is cut on: ``as_of`` for bitemporal tables, else the index (the first column)."""
    return "as_of" if set(BITEMPORAL_COLUMNS) <= set(names) else names[0]


def _write_part(reads: Iterable[tuple[pa.Table, int]], path: Path) -> tuple[PartitionInfo, pa.Schema] | None:
    """Write a day's rows to `path` as they are read, in row groups of `ROW_GROUP_ROWS` (`_row_groups`); what was
    written and its schema, or None (and no file) if there were no rows."""
    writer: pq.ParquetWriter | None = None
    rows, low, high, version = 0, None, None, -1
    try:
        for group, newest in _row_groups(reads, ROW_GROUP_ROWS):
            version = newest
            if writer is None:
                writer = pq.ParquetWriter(path, group.schema, compression="zstd")
            writer.write_table(group)
            least, most = pc.min_max(group.column(_time_column(group.column_names))).values()
            low = least.as_py() if low is None else min(low, least.as_py())
            high = most.as_py() if high is None else max(high, most.as_py())
            rows += group.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        return None
    return PartitionInfo(rows, _iso(low), _iso(high), version), writer.schema


def _row_groups(reads: Iterable[tuple[pa.Table, int]], rows: int) -> Iterator[tuple[pa.Table, int]]:
    """`reads` cut again into tables of `rows` rows (the last may hold fewer) in the first one's schema, each with
    the newest version read into it: the file then depends on the rows alone, not on how the store's segments cut
    them (re-exporting the same rows writes the same bytes, merged or not)."""
    pending: list[pa.Table] = []
    held, newest, schema = 0, -1, None
    for table, version in reads:
        schema = table.schema if schema is None else schema
        pending.append(table if table.schema.equals(schema) else table.cast(schema))
        held, newest = held + table.num_rows, max(newest, version)
        while held >= rows:
            joined = pa.concat_tables(pending)
            pending, held = [joined.slice(rows)], held - rows
            yield joined.slice(0, rows), newest
    if held:
        yield pa.concat_tables(pending), newest


def _iso(value: Any) -> str:
    return pd.Timestamp(value).tz_convert("UTC").isoformat()


def _iso_ns(value: int | None) -> str | None:
    return None if value is None else pd.Timestamp(value, tz="UTC").isoformat()


def _write_manifest(manifest: Manifest, dataset: Path, lake_dir: Path) -> None:
    """Replace the dataset's manifest atomically (staged, fsynced, renamed, directory fsynced)."""
    with _staging_dir(lake_dir) as staging:
        staged = staging / MANIFEST
        staged.write_text(json.dumps(manifest.to_json(), indent=1) + "\n", encoding="utf-8")
        _fsync_path(staged)
        _make_dirs_durable(dataset)
        os.replace(staged, dataset / MANIFEST)
        _fsync_path(dataset)


@contextmanager
def _dataset_lock(lake_dir: Path, library_name: str, symbol: str) -> Iterator[None]:
    """Exclusive ``flock`` on one dataset: one exporter at a time updates its partitions and manifest."""
    path = lake_dir / LOCKS_DIR / library_name / f"{symbol}.lock"
    _make_dirs_durable(path.parent)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table: index as a column, every datetime column `timestamp[ns, tz=UTC]`."""
    if PARTITION_COLUMN in frame.columns:
        raise ValueError(f"lake: column {PARTITION_COLUMN!r} clashes with the hive partition column; rename it")
    flat = restore_utc(_index_as_column(frame))
    table = pa.Table.from_pandas(flat, preserve_index=False).replace_schema_metadata(None)
    return table.cast(_stable_schema(table.schema, flat))


def _stable_schema(schema: pa.Schema, frame: pd.DataFrame) -> pa.Schema:
    """`schema` with all-missing object columns typed `string` (ArcticDB object columns hold strings), not `null`,
    so every partition of a dataset has the same schema."""
    for position, column in enumerate(schema):
        if pa.types.is_null(column.type) and frame[column.name].dtype == object:
            schema = schema.set(position, column.with_type(pa.string()))
    return schema


def _index_as_column(frame: pd.DataFrame) -> pd.DataFrame:
    name = frame.index.name or UNNAMED_INDEX
    if name in frame.columns:
        return frame.reset_index(drop=True)
    return frame.rename_axis(name).reset_index()


def _is_bitemporal(library: Library, symbol: str) -> bool:
    if is_partitioned(symbol):
        return False  # quotes and trades: market data
    description = library.get_description(symbol)
    names = {column.name for column in (*description.columns, *description.index)}
    return set(BITEMPORAL_COLUMNS) <= names


def _bitemporal_days(library: Library, symbol: str, start: date, end: date) -> Iterator[_Day]:
    """The rows with ``as_of`` in [start, end], by ``as_of`` day (stable: revisions keep their stored order);
    converted to Arrow once and sliced, as COT history holds many small days. Only segments ingested since the first
    time such a row could have been (`BitemporalTable.where_from`) are read: a feature's history grows by ~11,000
    rows a trading day at the production cadence."""
    query = QueryBuilder()
    first = pd.Timestamp(start, tz="UTC")
    after_last = pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1)
    query = query[(query["as_of"] >= first) & (query["as_of"] < after_last)]
    version, since = BitemporalTable(library, symbol).where_from(first)
    read = library.read(symbol, as_of=version, date_range=(since, None), query_builder=query)
    frame = restore_utc(read.data).sort_values("as_of", kind="stable")
    if frame.empty:
        return
    table = _to_arrow(frame)
    days = frame["as_of"].dt.floor("D").to_numpy()
    cuts = [0, *(np.flatnonzero(days[1:] != days[:-1]) + 1), len(days)]
    for a, b in itertools.pairwise(cuts):
        yield _Day(pd.Timestamp(days[a]).date(), [(table.slice(a, b - a), int(read.version))])


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


@contextmanager
def _staging_dir(lake_dir: Path) -> Iterator[Path]:
    """A fresh directory under `<lake_dir>/.staging`, removed afterwards (after a publish, only leftovers remain)."""
    root = lake_dir / STAGING_DIR
    _make_dirs_durable(root)
    staging = root / uuid.uuid4().hex
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _make_dirs_durable(path: Path) -> None:
    """mkdir -p, fsyncing the parent of every directory created so the new entries survive a crash."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        _fsync_path(directory.parent)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
