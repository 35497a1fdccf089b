"""Per-symbol watermarks: the exactly-once primitive for ordered streams (pure).

A watermark is the last committed index value plus the multiset of dedup keys committed AT that value.
Redelivered rows are recognised against it: rows before the watermark time were committed; rows at the
watermark time are matched one-for-one against the boundary multiset. This is exact when a redelivery
replays whole timestamps (Databento replays every record with ``ts >= start``) or when the key columns tell
apart the rows sharing one timestamp.

A stream cut into batches at arbitrary records (a live session) is one ordered *delivery*: its rows at a timestamp
may arrive in two batches, and the second part can equal the first in every key column (two one-lot trades in one
packet). `after_watermark` with a `Delivery` matches such a delivery against the watermark it resumed from only
(consuming the boundary multiset across its batches), so the continuation of a timestamp is never mistaken for a
redelivery.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_METADATA_KEY = "hydra_watermark"


@dataclass(frozen=True)
class Watermark:
    """Last committed index value (UTC ns) and dedup key -> count of rows committed at exactly that value."""

    ts_ns: int
    boundary: Mapping[str, int]

    @property
    def timestamp(self) -> pd.Timestamp:
        """``ts_ns`` as a UTC timestamp."""
        return pd.Timestamp(self.ts_ns, tz="UTC")

    def to_metadata(self, key_columns: Sequence[str]) -> dict[str, Any]:
        """Version metadata recording this watermark (and the key columns its boundary keys are made of)."""
        boundary = dict(self.boundary)
        return {_METADATA_KEY: {"ts_ns": self.ts_ns, "boundary": boundary, "key_columns": list(key_columns)}}

    @classmethod
    def from_metadata(cls, metadata: object) -> Watermark | None:
        """The watermark recorded in version metadata, or None if it holds none."""
        if not isinstance(metadata, Mapping) or _METADATA_KEY not in metadata:
            return None
        entry = metadata[_METADATA_KEY]
        return cls(int(entry["ts_ns"]), {str(k): int(v) for k, v in entry["boundary"].items()})


def row_keys(frame: pd.DataFrame, key_columns: Sequence[str]) -> list[str]:
    """Deterministic string key of each row from ``key_columns`` (stable across processes and restarts)."""
    columns = [frame[c].to_numpy() for c in key_columns]
    return [json.dumps([_plain(column[i]) for column in columns]) for i in range(len(frame))]


def boundary_at(frame: pd.DataFrame, ts_ns: int, key_columns: Sequence[str]) -> dict[str, int]:
    """Multiset of keys of the rows of index-sorted ``frame`` whose index value is ``ts_ns``."""
    ts = np.asarray(frame.index.asi8)
    first, last = np.searchsorted(ts, ts_ns, side="left"), np.searchsorted(ts, ts_ns, side="right")
    return dict(Counter(row_keys(frame.iloc[first:last], key_columns)))


def after_watermark(
    frame: pd.DataFrame, watermark: Watermark | None, key_columns: Sequence[str], delivery: Delivery | None = None
) -> tuple[pd.DataFrame, Watermark | None]:
    """Rows of an index-sorted UTC ``frame`` not covered by ``watermark``, and the watermark after them. With
    ``delivery`` (``frame`` is its next batch), rows at the watermark are matched against the boundary the delivery
    resumed from (consumed across batches) while the watermark is still that one, and are new once the delivery has
    moved it on (everything at that timestamp came from this delivery, in order)."""
    if frame.empty:
        return frame, watermark
    ts = np.asarray(frame.index.asi8)
    if watermark is None:
        keep = np.ones(len(frame), dtype=bool)
    else:
        keep = ts > watermark.ts_ns
        at = np.flatnonzero(ts == watermark.ts_ns)
        if len(at):
            keep[at] = _new_at_watermark(row_keys(frame.iloc[at], key_columns), watermark, delivery)
    accepted = frame if keep.all() else frame[keep]
    if accepted.empty:
        return accepted, watermark
    return accepted, advanced(watermark, accepted, key_columns)


@dataclass
class Delivery:
    """The state of one ordered delivery into a symbol: the watermark timestamp it resumed from (None: nothing was
    committed or buffered) and the boundary rows at it not yet matched by the delivery's redelivered rows."""

    token: object
    resume_ts: int | None
    unmatched: Counter[str]

    @classmethod
    def resuming(cls, token: object, watermark: Watermark | None) -> Delivery:
        if watermark is None:
            return cls(token, None, Counter())
        return cls(token, watermark.ts_ns, Counter(watermark.boundary))


def _new_at_watermark(keys: list[str], watermark: Watermark, delivery: Delivery | None) -> np.ndarray:
    """Which rows at the watermark's time (of ``keys``) are new: those beyond the boundary multiset; within a
    delivery, all of them once the delivery itself set this watermark."""
    if delivery is None:
        return _unmatched(keys, Counter(watermark.boundary))
    if watermark.ts_ns != delivery.resume_ts:
        return np.ones(len(keys), dtype=bool)
    return _unmatched(keys, delivery.unmatched)


def advanced(watermark: Watermark | None, accepted: pd.DataFrame, key_columns: Sequence[str]) -> Watermark:
    """The watermark after committing ``accepted`` (index-sorted, non-empty, none of it covered by ``watermark``)."""
    last = int(accepted.index.asi8[-1])
    boundary = Counter(boundary_at(accepted, last, key_columns))
    if watermark is not None and last == watermark.ts_ns:
        boundary.update(watermark.boundary)
    return Watermark(last, dict(boundary))


def committed_since(before: Watermark | None, after: Watermark | None) -> Watermark | None:
    """What the appends that moved the watermark from ``before`` to ``after`` committed, as a watermark to match the
    still-buffered rows they were cut from: at the same time, only the boundary rows beyond ``before``'s. Those were
    committed earlier and have left the buffer; counted again, they would take a later row equal to them in every key
    column (the continuation of a timestamp) for a committed one."""
    if before is None or after is None or before.ts_ns != after.ts_ns:
        return after
    return Watermark(after.ts_ns, dict(Counter(after.boundary) - Counter(before.boundary)))


def _unmatched(keys: list[str], remaining: Counter[str]) -> np.ndarray:
    """Which of ``keys`` are beyond the multiset ``remaining``, consuming it in place (a delivery's next batch
    continues from it)."""
    unseen = np.zeros(len(keys), dtype=bool)
    for position, key in enumerate(keys):
        if remaining[key] > 0:
            remaining[key] -= 1
        else:
            unseen[position] = True
    return unseen


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | np.datetime64):
        return None if pd.isna(value) else int(pd.Timestamp(value).value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        return int(value) if value.is_integer() else value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
