"""A market-data stream across its day partitions: which symbols hold it, reading it, splitting a flush.

``HE.mbp-1`` is stored as ``HE.mbp-1.<YYYY-MM-DD>`` symbols (see `store.symbols`), plus the whole ``HE.mbp-1`` of a
store written before partitioning, which is the stream's oldest part: all of its rows are at or before the watermark
it carried, and capture continued after that watermark into day partitions, so the parts never overlap and their
concatenation (legacy first, then the days in order) is the stream in index order. Unpartitioned symbols are streams
of one part. Sync (ArcticDB I/O): call from a worker thread.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from arcticdb.exceptions import ErrorCode
from arcticdb.version_store.library import DataError, Library, ReadRequest

from hydra_daemon.store.symbols import is_partitioned, partition_symbol, split_partition

__all__ = [
    "StreamRead",
    "VersionGoneError",
    "batch_failure",
    "day_parts",
    "edge_ns",
    "read_stream",
    "read_stream_slices",
    "segment_slices",
    "stream_symbols",
]

PROBE_DAYS = 62
"""A window of at most this many days finds its partitions by name (``has_symbol``, ~0.1 ms each); a longer or open
one lists the library's symbols once (ArcticDB caches the list; the first call after many writes takes ~1 s)."""
_DAY_NS = 86_400 * 10**9
_GONE = (ErrorCode.E_KEY_NOT_FOUND, ErrorCode.E_NO_SUCH_VERSION)


class VersionGoneError(LookupError):
    """A batched read found the version it picked gone: maintenance deletes a superseded version `prune_grace_s`
    after a merge, so a read that picked it earlier and took longer loses it (what a single read raises as
    ``NoDataFoundException``). Reading again picks the version that replaced it, holding the same rows."""


def batch_failure(library_name: str, symbol: str, error: DataError) -> LookupError:
    """What to raise for ``symbol``'s failed entry of a batched read: `VersionGoneError` if its version or keys are
    gone, else a plain ``LookupError``."""
    message = f"reading {library_name}/{symbol} failed: {error}"
    return VersionGoneError(message) if error.error_code in _GONE else LookupError(message)


@dataclass(frozen=True)
class StreamRead:
    """Rows of a stream (its parts concatenated in order) and the version of the newest part read (None if none)."""

    data: pd.DataFrame
    version: int | None


def stream_symbols(
    library: Library,
    stream: str,
    *,
    first: date | None = None,
    last: date | None = None,
    as_of: str | None = None,
) -> list[str]:
    """The stored symbols holding ``stream``, oldest first: the whole (legacy) symbol if stored, then the day
    partitions in ``[first, last]`` (either open). ``as_of``: a snapshot name (what it pinned)."""
    whole = [stream] if library.has_symbol(stream, as_of) else []
    if not is_partitioned(stream):
        return whole
    if first is not None and last is not None and (last - first).days < PROBE_DAYS:
        named = (partition_symbol(stream, day) for day in _days(first, last))
        return whole + [symbol for symbol in named if library.has_symbol(symbol, as_of)]
    pattern = f"^{re.escape(stream)}\\."
    listed = library.list_symbols(regex=pattern) if as_of is None else library.list_symbols(as_of, pattern)
    days = sorted(
        split[1]
        for symbol in listed
        if (split := split_partition(symbol)) is not None
        and split[0] == stream
        and (first is None or split[1] >= first)
        and (last is None or split[1] <= last)
    )
    return whole + [partition_symbol(stream, day) for day in days]


def read_stream(
    library: Library,
    stream: str,
    *,
    date_range: tuple[pd.Timestamp | None, pd.Timestamp | None] | None = None,
    columns: Sequence[str] | None = None,
    as_of: str | None = None,
) -> StreamRead:
    """The rows of ``stream`` with index in ``date_range`` (inclusive, either end open), reading only the parts that
    overlap it, in one batched read; ``LookupError`` if no part of the stream is stored."""
    start, end = date_range if date_range is not None else (None, None)
    symbols = stream_symbols(library, stream, first=_day(start), last=_day(end), as_of=as_of)
    if not symbols:
        symbols = stream_symbols(library, stream, as_of=as_of)[-1:]  # none overlaps: read one for the columns
        if not symbols:
            raise LookupError(f"no symbol {stream!r} (nor any day partition of it) in library {library.name!r}")
    wanted = None if columns is None else list(columns)
    requests = [ReadRequest(s, as_of=as_of, date_range=date_range, columns=wanted) for s in symbols]
    results = library.read_batch(requests) if len(requests) > 1 else [_read_one(library, requests[0])]
    frames = []
    for symbol, result in zip(symbols, results, strict=True):
        if isinstance(result, DataError):
            raise batch_failure(library.name, symbol, result)
        frames.append(result.data)
    data = frames[0] if len(frames) == 1 else pd.concat([f for f in frames if len(f)] or frames[:1])
    return StreamRead(data, int(results[-1].version))


def read_stream_slices(
    library: Library, stream: str, date_range: tuple[pd.Timestamp, pd.Timestamp], rows: int
) -> Iterator[tuple[pd.DataFrame, int]]:
    """The rows of ``stream`` with index in ``date_range`` (inclusive), in order, as consecutive reads (rows, the
    version read) of whole segments holding at most about ``rows`` rows each (`segment_slices`): a day of quotes
    (11.6 M at 140 a second) read at once took ~4 GB. Each read picks the latest version: maintenance may merge
    between two reads, but a merge keeps the rows of every time range, and the ranges are cut from the index once,
    so no row is read twice."""
    start, end = date_range
    for symbol in stream_symbols(library, stream, first=_day(start), last=_day(end)):
        segments = library._nvs.read_index(symbol)
        starts, ends = _utc_index(segments.index), _utc_index(segments["end_index"])  # ends exclusive
        overlapping = segments[(ends > start) & (starts <= end)]
        if overlapping.empty:
            continue
        ranges = list(segment_slices(overlapping, rows))
        ranges[0], ranges[-1] = (start, ranges[0][1]), (ranges[-1][0], end)  # and rows written since the index
        clipped = [(max(first, start), min(last, end)) for first, last in ranges]
        yield from filter(_has_rows, map(partial(_read_range, library, symbol), clipped))  # holding no frame


def _read_range(library: Library, symbol: str, span: tuple[pd.Timestamp, pd.Timestamp]) -> tuple[pd.DataFrame, int]:
    result = library.read(symbol, date_range=span)
    return result.data, int(result.version)


def _has_rows(read: tuple[pd.DataFrame, int]) -> bool:
    return len(read[0]) > 0


def segment_slices(segments: pd.DataFrame, rows: int) -> Iterator[tuple[pd.Timestamp, pd.Timestamp]]:
    """Inclusive UTC time ranges covering ``segments`` (``read_index`` rows, in row order), each of whole segments
    and at most ``rows`` rows where the segments allow: a range ends only where no timestamp spans two segments, so
    it holds all the rows of its time range (``update`` replaces the rows between its frame's first and last
    timestamps; a read of it gets whole segments)."""
    starts, ends = list(_utc_index(segments.index)), list(_utc_index(segments["end_index"]))  # ends exclusive
    sizes = (segments["end_row"] - segments["start_row"]).to_numpy()
    begin, taken = 0, 0
    for position, size in enumerate(sizes):
        taken += int(size)
        following = position + 1
        if following == len(sizes) or (starts[following] >= ends[position] and taken + sizes[following] > rows):
            yield starts[begin], ends[position] - pd.Timedelta(1, "ns")
            begin, taken = following, 0


def edge_ns(library: Library, stream: str, *, tail: bool) -> int | None:
    """The stream's newest (``tail``) or oldest index value in UTC ns; None if it holds no rows."""
    symbols = stream_symbols(library, stream)
    for symbol in reversed(symbols) if tail else symbols:
        rows = (library.tail if tail else library.head)(symbol, 1).data
        if not rows.empty:
            return int(pd.Timestamp(rows.index[0]).value)
    return None


def day_parts(stream: str, frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``frame`` (UTC index, sorted) cut into (symbol, rows) per symbol it is stored in, oldest first: one part per
    UTC day for a partitioned stream, else the whole frame under ``stream``."""
    if not is_partitioned(stream) or frame.empty:
        return [(stream, frame)]
    days = np.asarray(frame.index.asi8) // _DAY_NS
    cuts = [0, *(np.flatnonzero(days[1:] != days[:-1]) + 1), len(days)]
    return [(partition_symbol(stream, _epoch_day(int(days[a]))), frame.iloc[a:b]) for a, b in itertools.pairwise(cuts)]


def _read_one(library: Library, request: ReadRequest) -> Any:
    return library.read(request.symbol, as_of=request.as_of, date_range=request.date_range, columns=request.columns)


def _utc_index(values: Any) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(values)
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


def _day(value: pd.Timestamp | None) -> date | None:
    return None if value is None else pd.Timestamp(value).tz_convert("UTC").date()


def _epoch_day(days: int) -> date:
    return date(1970, 1, 1) + timedelta(days=days)


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)
