"""Export ArcticDB symbols to a hive-partitioned, zstd-compressed Parquet lake.

Layout: ``<lake_dir>/<library>/<symbol>/date=YYYY-MM-DD/part-0.parquet``; each symbol directory is one dataset,
readable by ``polars.scan_parquet(root / "**/*.parquet", hive_partitioning=True)`` and
``pyarrow.dataset.dataset(root, partitioning="hive")``.

Partition date (UTC calendar day):
- market data (ohlcv, mbp-1, chain snapshots, ...): the date of the Arctic index value;
- bitemporal tables (columns ``as_of``, ``available_at``, ``revision``, ``ingested_at``): the date of ``as_of``, the
  day the fact is about, so a backtest prunes partitions by the period it studies. Every revision of that day's facts
  goes into the partition; the point-in-time selection stays the reader's job (``available_at`` is kept).

Files carry the Arctic index as a column (its name, or ``ts_index`` if unnamed) and every timestamp as
``timestamp[ns, tz=UTC]``; the ``date`` column comes from the directory name only (polars reads it as ``Date``,
pyarrow as ``string``).

Publishing is atomic: a partition is written under ``<lake_dir>/.staging/<uuid>`` (same filesystem, outside every
dataset root, so scans never see half-written files), fsynced, then moved into place with ``os.replace`` and the
parent directory fsynced. A new partition is one directory rename; an existing one is replaced by renaming the new
``part-0.parquet`` over the old file, so readers see the old or the new file and never a missing partition.
Re-exporting the same rows writes identical content (idempotent); re-exporting a day that has gained rows (e.g. today,
exported while capture runs) replaces the partition with all of them. A day with no rows writes nothing and leaves an
existing partition alone. A process killed mid-export can leave a directory under ``.staging``, never anything inside
a dataset.

Sync API: call from a worker thread (``anyio.to_thread.run_sync``).
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import structlog
from arcticdb import QueryBuilder
from arcticdb.version_store.library import Library

from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal import BITEMPORAL_COLUMNS
from hydra_daemon.store.frames import restore_utc

log = structlog.get_logger()

PART_FILE = "part-0.parquet"
STAGING_DIR = ".staging"
PARTITION_COLUMN = "date"
UNNAMED_INDEX = "ts_index"


def export_day(library: Library, library_name: str, symbol: str, day: date, lake_dir: Path) -> Path | None:
    """Export `symbol`'s rows for the UTC `day`; the partition directory written, or None if the day has no rows."""
    paths = export_range(library, library_name, symbol, day, day, lake_dir)
    return paths[0] if paths else None


def export_range(
    library: Library, library_name: str, symbol: str, start: date, end: date, lake_dir: Path
) -> list[Path]:
    """Export every UTC day from `start` to `end` (inclusive); the partition directories written, in date order."""
    if end < start:
        raise ValueError(f"export of {library_name}/{symbol}: end {end} is before start {start}")
    dataset = dataset_root(lake_dir, library_name, symbol)
    if not library.has_symbol(symbol):
        held = ", ".join(sorted(library.list_symbols())[:20]) or "nothing yet"
        raise LookupError(f"export: no symbol {symbol!r} in library {library_name!r} (it holds: {held})")
    if _is_bitemporal(library, symbol):
        days = _bitemporal_days(library, symbol, start, end)
    else:
        days = ((day, _market_day(library, symbol, day)) for day in _days(start, end))
    written = []
    for day, frame in days:
        if frame.empty:
            continue
        written.append(_publish_partition(frame, dataset, day, lake_dir))
        log.info("lake.partition_published", library=library_name, symbol=symbol, day=day.isoformat(), rows=len(frame))
    return written


def export_from_store(uri: str, library_name: str, symbol: str, start: date, end: date, lake_dir: Path) -> list[Path]:
    """`export_range` on the store at `uri`, opened read-only (works beside a running daemon; for the CLI)."""
    with Store.open(uri, writer=False) as store:
        return export_range(store.library(library_name), library_name, symbol, start, end, lake_dir)


def dataset_root(lake_dir: Path, library_name: str, symbol: str) -> Path:
    """The directory holding one symbol's dataset; rejects names that would escape the lake or hide from scans."""
    for what, name in (("library", library_name), ("symbol", symbol)):
        if not name or "/" in name or "\\" in name or name.startswith((".", "_")):
            raise ValueError(f"lake: {what} name {name!r} cannot be a directory name (no '/', no leading '.' or '_')")
    return lake_dir / library_name / symbol


def _publish_partition(frame: pd.DataFrame, dataset: Path, day: date, lake_dir: Path) -> Path:
    """Write `frame` (index becomes a column) as the `day` partition of `dataset`, atomically; the partition dir."""
    table = _to_arrow(frame)
    target = dataset / f"{PARTITION_COLUMN}={day.isoformat()}"
    with _staging_dir(lake_dir) as staging:
        part = staging / PART_FILE
        pq.write_table(table, part, compression="zstd")
        _fsync_path(part)
        _fsync_path(staging)
        _make_dirs_durable(dataset)
        try:
            os.replace(staging, target)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            os.replace(part, target / PART_FILE)
        _fsync_path(target)
        _fsync_path(dataset)
    return target


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
    for position, field in enumerate(schema):
        if pa.types.is_null(field.type) and frame[field.name].dtype == object:
            schema = schema.set(position, field.with_type(pa.string()))
    return schema


def _index_as_column(frame: pd.DataFrame) -> pd.DataFrame:
    name = frame.index.name or UNNAMED_INDEX
    if name in frame.columns:
        return frame.reset_index(drop=True)
    return frame.rename_axis(name).reset_index()


def _is_bitemporal(library: Library, symbol: str) -> bool:
    description = library.get_description(symbol)
    names = {column.name for column in (*description.columns, *description.index)}
    return set(BITEMPORAL_COLUMNS) <= names


def _market_day(library: Library, symbol: str, day: date) -> pd.DataFrame:
    first = pd.Timestamp(day, tz="UTC")
    last = first + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    return library.read(symbol, date_range=(first, last)).data


def _bitemporal_days(library: Library, symbol: str, start: date, end: date) -> Iterator[tuple[date, pd.DataFrame]]:
    query = QueryBuilder()
    first = pd.Timestamp(start, tz="UTC")
    after_last = pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=1)
    query = query[(query["as_of"] >= first) & (query["as_of"] < after_last)]
    frame = restore_utc(library.read(symbol, query_builder=query).data)
    days = frame["as_of"].dt.date
    for day, rows in frame.groupby(days.to_numpy(), sort=True):
        yield day, rows.sort_values("as_of", kind="stable")


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
