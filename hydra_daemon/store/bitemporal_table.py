"""Append-only bitemporal symbol in an ArcticDB library (COT reports, features)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from arcticdb import QueryBuilder
from arcticdb.version_store.library import Library

from hydra_daemon.store import bitemporal
from hydra_daemon.store.frames import normalise_dtypes, require_utc_columns, require_utc_index, restore_utc


class BitemporalTable:
    """Append-only bitemporal symbol. Columns: keys..., values..., as_of, available_at, revision, ingested_at
    (all UTC). Arctic index = ingested_at (monotonic transaction time).

    Writes only through a writer store's library, from one process (the store's writer lease).
    """

    def __init__(self, library: Library, symbol: str, keys: Sequence[str] = ("as_of",)) -> None:
        if "as_of" not in keys:
            raise ValueError(f"{symbol}: keys {list(keys)} must include 'as_of'")
        reserved = set(keys) & {"available_at", "revision", "ingested_at"}
        if reserved:
            raise ValueError(f"{symbol}: {sorted(reserved)} cannot be keys")
        self._library = library
        self.symbol = symbol
        self.keys = tuple(keys)

    def record(
        self,
        frame: pd.DataFrame,
        *,
        value_columns: Sequence[str],
        available_at: pd.Series | pd.Timestamp,
        ingested_at: pd.Timestamp,
    ) -> pd.DataFrame:
        """Append the new or changed rows of ``frame`` with revision numbers; return the rows written."""
        what = f"{self._library.name}/{self.symbol}"
        incoming = self._incoming(frame, value_columns, available_at, what)
        ingested = bitemporal.utc_timestamp(ingested_at, what=f"{what} ingested_at")
        to_write = bitemporal.revisions_to_write(self.latest(), incoming, self.keys, value_columns)
        if to_write.empty:
            return to_write.assign(ingested_at=pd.Series(dtype="datetime64[ns, UTC]"))
        self._require_after_last_ingestion(ingested, what)
        to_write.index = pd.DatetimeIndex(np.full(len(to_write), ingested.value), tz="UTC", name="ingested_at")
        require_utc_index(to_write, what=what)
        self._library.append(self.symbol, to_write, prune_previous_versions=False)
        return to_write.reset_index()

    def history(self) -> pd.DataFrame:
        """All revisions, sorted by (keys, revision)."""
        return self._read(None)

    def point_in_time(self, at: dt.datetime) -> pd.DataFrame:
        """Per key the latest revision with ``available_at <= at`` (invariant 3)."""
        at_utc = bitemporal.utc_timestamp(at, what=f"{self.symbol} point_in_time(at=...)")
        query = QueryBuilder()
        query = query[query["available_at"] <= at_utc]
        return bitemporal.point_in_time(self._read(query), at_utc, self.keys)

    def latest(self) -> pd.DataFrame:
        """Latest revision per key ignoring ``available_at`` (for change detection)."""
        return bitemporal.latest_revisions(self.history(), self.keys)

    def _read(self, query: QueryBuilder | None) -> pd.DataFrame:
        if not self._library.has_symbol(self.symbol):
            utc = "datetime64[ns, UTC]"
            dtypes = {k: utc if k == "as_of" else object for k in self.keys}
            dtypes |= {"available_at": utc, "revision": "int64", "ingested_at": utc}
            return pd.DataFrame({c: pd.Series(dtype=d) for c, d in dtypes.items()})
        stored = restore_utc(self._library.read(self.symbol, query_builder=query).data).reset_index()
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

    def _require_after_last_ingestion(self, ingested: pd.Timestamp, what: str) -> None:
        if not self._library.has_symbol(self.symbol):
            return
        tail = restore_utc(self._library.tail(self.symbol, 1).data)
        if len(tail) and ingested < tail.index[-1]:
            raise ValueError(
                f"{what}: ingested_at {ingested} is before the last ingestion {tail.index[-1]}; "
                "transaction time must not go backwards (check the system clock)"
            )
