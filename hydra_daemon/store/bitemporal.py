"""Bitemporal selection (pure, pandas): point-in-time reads and revision detection.

Rows carry ``as_of`` (what the fact is about), ``available_at`` (when the world could know it), ``revision``
(0, 1, ... per key) and ``ingested_at`` (when we stored it). A point-in-time read at ``T`` sees only rows with
``available_at <= T`` and, per key, the highest revision among them (ties: the latest ``available_at``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

BITEMPORAL_COLUMNS = ("as_of", "available_at", "revision", "ingested_at")


def utc_timestamp(value: dt.datetime | pd.Timestamp, *, what: str) -> pd.Timestamp:
    """``value`` as a UTC ``Timestamp``; ``ValueError`` naming ``what`` if it is naive."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise ValueError(f"{what}: timestamp {stamp} is timezone-naive; pass a UTC (tz-aware) timestamp")
    return stamp.tz_convert("UTC")


def point_in_time(history: pd.DataFrame, at: pd.Timestamp, keys: Sequence[str]) -> pd.DataFrame:
    """Rows with ``available_at <= at``, then per ``keys`` the highest revision (ties: latest ``available_at``)."""
    at = utc_timestamp(at, what="point_in_time(at=...)")
    known = np.flatnonzero((history["available_at"] <= at).to_numpy())
    return history.iloc[known[_latest_positions(history.iloc[known], keys)]].reset_index(drop=True)


def latest_revisions(history: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per ``keys`` the highest revision (ties: latest ``available_at``), ignoring when it became available."""
    return history.iloc[_latest_positions(history, keys)].reset_index(drop=True)


def _latest_positions(history: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """Positions of the latest revision per key, in key order. Works on the key columns only, so a wide table is
    copied once (by the caller's single row take), not once per pandas step."""
    if history.empty:
        return np.zeros(0, dtype=np.intp)
    codes = [pd.factorize(history[k], sort=True, use_na_sentinel=False)[0] for k in keys]
    revision = history["revision"].to_numpy()
    available = pd.DatetimeIndex(history["available_at"]).asi8
    order = np.lexsort((available, revision, *reversed(codes)))
    grouped = np.column_stack([c[order] for c in codes])
    last = np.r_[(grouped[1:] != grouped[:-1]).any(axis=1), True]
    return order[last]


def revisions_to_write(
    stored_latest: pd.DataFrame, incoming: pd.DataFrame, keys: Sequence[str], value_columns: Sequence[str]
) -> pd.DataFrame:
    """Incoming rows whose key is new (revision 0) or whose values differ from the latest stored revision
    (its revision + 1); unchanged rows are dropped. NaN == NaN counts as unchanged."""
    keys = list(keys)
    repeated = incoming.duplicated(keys, keep=False)
    if repeated.any():
        raise ValueError(f"incoming rows repeat keys {keys}: {incoming.loc[repeated, keys].head(5).to_dict('records')}")
    rows = incoming.reset_index(drop=True)
    if stored_latest.empty:
        return rows.assign(revision=np.zeros(len(rows), dtype="int64"))
    stored_values = [c for c in value_columns if c in stored_latest.columns]
    stored = stored_latest[[*keys, *stored_values, "revision"]].rename(
        columns={c: f"{c}\0stored" for c in [*stored_values, "revision"]}
    )
    merged = rows.merge(stored, on=keys, how="left", validate="one_to_one")
    is_new = merged["revision\0stored"].isna().to_numpy()
    changed = is_new.copy()
    for column in value_columns:
        before = merged[f"{column}\0stored"] if column in stored_values else pd.Series(np.nan, index=merged.index)
        changed |= _differs(merged[column], before)
    previous = merged["revision\0stored"].fillna(-1).to_numpy(dtype="int64")
    return rows[changed].assign(revision=previous[changed] + 1)


def _differs(now: pd.Series, before: pd.Series) -> np.ndarray:
    both_missing = now.isna().to_numpy() & before.isna().to_numpy()
    try:
        equal = (now == before).fillna(False).to_numpy(dtype=bool)
    except TypeError:
        equal = np.array([a == b for a, b in zip(now, before, strict=True)], dtype=bool)
    return ~(equal | both_missing)
