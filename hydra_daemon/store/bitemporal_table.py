"""Append-only bitemporal symbol in an ArcticDB library (COT reports, features).

Writes cost O(incoming rows): each append records in its version metadata the largest stored ``as_of`` and the last
``ingested_at``, so a write of keys newer than everything stored (every feature snapshot, every new COT week) reads
no data at all; only incoming keys at or before that bound (revisions, re-sent history) are looked up, with one
filtered read of their ``as_of`` span. Compaction keeps version metadata and pruning keeps the latest version, so
the bound survives both; a table written before this layout has none, derives it once and records it on its next
write.

Reads of an ``as_of`` window cost O(rows in it): the metadata also holds the largest lead of a row's ``as_of`` over
its ``ingested_at`` (the index), so every row with ``as_of >= start`` has ``ingested_at >= start - lead`` and a
``date_range`` from there lets ArcticDB skip every older segment (a day of a year-long feature: 4 ms instead of 84).
A facts-about-the-past table has a lead <= 0; a table whose metadata lacks it is read whole (and derives it on its
next write).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from arcticdb import QueryBuilder
from arcticdb.version_store._store import VersionedItem
from arcticdb.version_store.library import Library

from hydra_daemon.store import bitemporal
from hydra_daemon.store.frames import normalise_dtypes, require_utc_columns, require_utc_index, restore_utc

_METADATA_KEY = "hydra_bitemporal"


@dataclass(frozen=True)
class _Bounds:
    """Largest stored ``as_of``, last ``ingested_at`` and largest ``as_of - ingested_at`` of any stored row (UTC ns;
    the lead is None for a table written before it was kept), kept in the latest version's metadata."""

    max_as_of_ns: int
    last_ingested_ns: int
    max_lead_ns: int | None

    def to_metadata(self) -> dict[str, Any]:
        entry = {"max_as_of_ns": self.max_as_of_ns, "last_ingested_ns": self.last_ingested_ns}
        return {_METADATA_KEY: entry | ({} if self.max_lead_ns is None else {"max_lead_ns": self.max_lead_ns})}

    @classmethod
    def from_metadata(cls, metadata: object) -> _Bounds | None:
        if not isinstance(metadata, dict) or _METADATA_KEY not in metadata:
            return None
        entry = metadata[_METADATA_KEY]
        lead = entry.get("max_lead_ns")
        return cls(int(entry["max_as_of_ns"]), int(entry["last_ingested_ns"]), None if lead is None else int(lead))

    @classmethod
    def after(cls, bounds: _Bounds | None, as_of_ns: int, ingested_ns: int) -> _Bounds:
        """The bounds once rows with largest ``as_of`` ``as_of_ns`` are appended at ``ingested_ns`` to a table with
        ``bounds`` (None: empty; else they must know the lead, as `BitemporalTable._bounds` makes sure)."""
        lead = as_of_ns - ingested_ns
        if bounds is None:
            return cls(as_of_ns, ingested_ns, lead)
        if bounds.max_lead_ns is None:
            raise ValueError("bounds without the lead of the stored rows cannot be extended")
        return cls(max(bounds.max_as_of_ns, as_of_ns), ingested_ns, max(bounds.max_lead_ns, lead))


class BitemporalTable:
    """Append-only bitemporal symbol. Columns: keys..., values..., as_of, available_at, revision, ingested_at
    (all UTC). Arctic index = ingested_at (monotonic transaction time).

    Writes only through a writer store's library, from one process (the store's writer lease), holding ``lock``
    (pass `Store.symbol_lock` so maintenance never compacts or prunes the symbol mid-append).
    """

    def __init__(
        self,
        library: Library,
        symbol: str,
        keys: Sequence[str] = ("as_of",),
        *,
        lock: threading.Lock | None = None,
    ) -> None:
        if "as_of" not in keys:
            raise ValueError(f"{symbol}: keys {list(keys)} must include 'as_of'")
        reserved = set(keys) & {"available_at", "revision", "ingested_at"}
        if reserved:
            raise ValueError(f"{symbol}: {sorted(reserved)} cannot be keys")
        self._library = library
        self.symbol = symbol
        self.keys = tuple(keys)
        self._lock = lock if lock is not None else threading.Lock()

    def record(
        self,
        frame: pd.DataFrame,
        *,
        value_columns: Sequence[str],
        available_at: pd.Series | pd.Timestamp,
        ingested_at: pd.Timestamp,
        revised_at: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Append the new or changed rows of ``frame`` with revision numbers; return the rows written. A changed row
        (revision > 0) is available no earlier than ``revised_at`` when given: for a writer whose ``available_at``
        says when a value of its kind is published, not when a different value for a stored key was."""
        what = f"{self._library.name}/{self.symbol}"
        incoming = self._incoming(frame, value_columns, available_at, what)
        ingested = bitemporal.utc_timestamp(ingested_at, what=f"{what} ingested_at")
        with self._lock:
            bounds = self._bounds()
            stored = self._stored_latest(incoming, bounds)
            to_write = bitemporal.revisions_to_write(stored, incoming, self.keys, value_columns)
            if to_write.empty:
                return to_write.assign(ingested_at=pd.Series(dtype="datetime64[ns, UTC]"))
            if revised_at is not None:
                revised = bitemporal.utc_timestamp(revised_at, what=f"{what} revised_at")
                later = (to_write["revision"] > 0) & (to_write["available_at"] < revised)
                to_write.loc[later, "available_at"] = revised
            if bounds is not None and ingested.value < bounds.last_ingested_ns:
                raise ValueError(
                    f"{what}: ingested_at {ingested} is before the last ingestion "
                    f"{pd.Timestamp(bounds.last_ingested_ns, tz='UTC')}; transaction time must not go backwards "
                    "(check the system clock)"
                )
            to_write.index = pd.DatetimeIndex(np.full(len(to_write), ingested.value), tz="UTC", name="ingested_at")
            require_utc_index(to_write, what=what)
            after = _Bounds.after(bounds, int(to_write["as_of"].max().value), ingested.value)
            self._library.append(self.symbol, to_write, metadata=after.to_metadata(), prune_previous_versions=False)
        return to_write.reset_index()

    @property
    def library(self) -> Library:
        return self._library

    def history(self, start: dt.datetime | None = None, end: dt.datetime | None = None) -> pd.DataFrame:
        """All revisions with ``as_of`` in ``[start, end]`` (either open), sorted by (keys, revision)."""
        return self._read(self.window(start, end), start)

    def where_from(
        self, start: dt.datetime | None, as_of: str | None = None
    ) -> tuple[int | str | None, pd.Timestamp | None]:
        """For a read of rows with ``as_of >= start`` at snapshot ``as_of`` (None: the latest version): the version
        to read — ``as_of``, else the number of the latest version, whose metadata gave the bound, so a write in
        between cannot bring rows it does not cover — and the first index time (``ingested_at``) worth reading
        (None: from the beginning). Reads metadata only when ``start`` is given."""
        if start is None:
            return as_of, None
        return self.start_of(self._library.read_metadata(self.symbol, as_of=as_of), start, as_of)

    def start_of(
        self, item: VersionedItem, start: dt.datetime | None, as_of: str | None
    ) -> tuple[int | str | None, pd.Timestamp | None]:
        """`where_from` given ``item``, the metadata read of this symbol at ``as_of`` (for batched reads)."""
        bounds = _Bounds.from_metadata(item.metadata)
        version = as_of if as_of is not None else item.version
        if start is None or bounds is None or bounds.max_lead_ns is None:
            return version, None
        first = bitemporal.utc_timestamp(start, what=f"{self.symbol} start")
        try:
            return version, first - pd.Timedelta(bounds.max_lead_ns, "ns")
        except (OverflowError, ValueError):  # beyond what pandas can hold (a start in 1677 or 2262): read it all
            return version, None

    def window(self, start: dt.datetime | None, end: dt.datetime | None) -> QueryBuilder | None:
        """The ArcticDB filter of `history` (None: no filter), for readers that read themselves."""
        return None if start is None and end is None else self._as_of_window(QueryBuilder(), start, end)

    def point_in_time(
        self, at: dt.datetime, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> pd.DataFrame:
        """Per key the latest revision with ``available_at <= at`` (invariant 3), for ``as_of`` in ``[start, end]``.

        Both filters run inside ArcticDB, segment by segment, so only the matching rows reach pandas; with
        ``start``, only segments ingested since `where_from` are read."""
        at_utc = bitemporal.utc_timestamp(at, what=f"{self.symbol} point_in_time(at=...)")
        return self.point_in_time_of(self._read(self.query(at_utc, start, end), start), at_utc)

    def query(self, at: pd.Timestamp, start: dt.datetime | None, end: dt.datetime | None) -> QueryBuilder:
        """The ArcticDB filter of a point-in-time read (for batched reads of many tables)."""
        query = QueryBuilder()
        query = query[query["available_at"] <= at]
        return self._as_of_window(query, start, end)

    def point_in_time_of(self, rows: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
        """`point_in_time` of rows read with `query` (UTC restored, index reset)."""
        return bitemporal.point_in_time(rows, at, self.keys)

    def latest(self) -> pd.DataFrame:
        """Latest revision per key ignoring ``available_at`` (for change detection)."""
        return bitemporal.latest_revisions(self.history(), self.keys)

    def _as_of_window(self, query: QueryBuilder, start: dt.datetime | None, end: dt.datetime | None) -> QueryBuilder:
        if start is not None:
            query = query[query["as_of"] >= bitemporal.utc_timestamp(start, what=f"{self.symbol} start")]
        if end is not None:
            query = query[query["as_of"] <= bitemporal.utc_timestamp(end, what=f"{self.symbol} end")]
        return query

    def _bounds(self) -> _Bounds | None:
        """The stored bounds: from the latest version's metadata, derived from the data (one read of ``as_of``) for
        a table written before they, or the lead, were kept."""
        if not self._library.has_symbol(self.symbol):
            return None
        found = _Bounds.from_metadata(self._library.read_metadata(self.symbol).metadata)
        if found is not None and found.max_lead_ns is not None:
            return found
        stored = restore_utc(self._library.read(self.symbol, columns=["as_of"]).data)
        if stored.empty:
            return None
        as_of, ingested = pd.DatetimeIndex(stored["as_of"]).asi8, stored.index.asi8
        return _Bounds(int(as_of.max()), int(ingested.max()), int((as_of - ingested).max()))

    def _stored_latest(self, incoming: pd.DataFrame, bounds: _Bounds | None) -> pd.DataFrame:
        """Latest stored revision of the incoming keys that may be stored (``as_of`` not after the stored bound)."""
        if bounds is None:
            return pd.DataFrame()
        maybe_stored = incoming.loc[incoming["as_of"] <= pd.Timestamp(bounds.max_as_of_ns, tz="UTC"), "as_of"]
        if maybe_stored.empty:
            return pd.DataFrame()
        stored = self.history(maybe_stored.min(), maybe_stored.max())
        return bitemporal.latest_revisions(stored[stored["as_of"].isin(set(maybe_stored))], self.keys)

    def _read(self, query: QueryBuilder | None, start: dt.datetime | None) -> pd.DataFrame:
        if not self._library.has_symbol(self.symbol):
            utc = "datetime64[ns, UTC]"
            dtypes = {k: utc if k == "as_of" else object for k in self.keys}
            dtypes |= {"available_at": utc, "revision": "int64", "ingested_at": utc}
            return pd.DataFrame({c: pd.Series(dtype=d) for c, d in dtypes.items()})
        version, first = self.where_from(start)
        window = None if first is None else (first, None)
        stored = self._library.read(self.symbol, as_of=version, date_range=window, query_builder=query).data
        stored = restore_utc(stored).reset_index()
        return stored.sort_values([*self.keys, "revision"], kind="stable").reset_index(drop=True)

    def _incoming(
        self, frame: pd.DataFrame, value_columns: Sequence[str], available_at: pd.Series | pd.Timestamp, what: str
    ) -> pd.DataFrame:
        columns = [*self.keys, *value_columns]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{what}: columns {missing} missing from the frame (columns: {list(frame.columns)})")
        incoming = frame[columns].reset_index(drop=True)
        if isinstance(available_at, pd.Series):
            if len(available_at) != len(frame):
                raise ValueError(f"{what}: available_at has {len(available_at)} values for {len(frame)} rows")
            incoming["available_at"] = available_at.reset_index(drop=True)
        else:
            incoming["available_at"] = bitemporal.utc_timestamp(available_at, what=f"{what} available_at")
        incoming = normalise_dtypes(incoming)
        require_utc_columns(incoming, what=what)
        for column in ("as_of", "available_at"):
            if not isinstance(incoming[column].dtype, pd.DatetimeTZDtype):
                raise ValueError(f"{what}: column {column!r} must hold UTC timestamps, got {incoming[column].dtype}")
            if incoming[column].isna().any():
                raise ValueError(f"{what}: column {column!r} has missing values")
        return incoming
