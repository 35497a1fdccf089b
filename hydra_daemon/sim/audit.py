"""Compare what a store holds with the venue's recorded ground truth (the `--record` DBN file).

For every market-data symbol the daemon wrote, the rows strictly before the symbol's newest index time must equal
the ground truth's rows of the same schema and instruments (as multisets), and the rows at the newest time must be a
subset of the truth's: anything else is a missing or duplicated record. Used by the demo and the tests.

The ground truth is decoded by Databento's own `DBNStore`, not by the decoder under test, and nothing here comes
from the daemon's code: the documented store layout (libraries `futures`/`options`, symbols `<market>.<schema>`, and
for quotes and trades one `<market>.<schema>.<YYYY-MM-DD>` symbol per UTC day after the whole `<market>.<schema>` an
older store holds) is spelled out, so a bug on the daemon's side cannot pass on both.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import databento as db
import databento_dbn as dbn
import numpy as np
import pandas as pd

from hydra_daemon.sim.market import MarketModel

_LIBRARY_KINDS = {"futures": frozenset("F"), "options": frozenset("CP")}
RECORD_KEYS: Mapping[str, tuple[str, ...]] = {
    "ohlcv-1d": ("instrument_id", "open", "high", "low", "close", "volume"),
    "ohlcv-1m": ("instrument_id", "open", "high", "low", "close", "volume"),
    "mbp-1": (
        "instrument_id",
        "ts_event",
        "sequence",
        "action",
        "side",
        "price",
        "size",
        "flags",
        "bid_px_00",
        "ask_px_00",
        "bid_sz_00",
        "ask_sz_00",
    ),
    "definition": ("instrument_id", "ts_event", "raw_symbol", "security_update_action", "expiration", "strike_price"),
    "statistics": ("instrument_id", "ts_event", "stat_type", "sequence", "price", "quantity", "update_action"),
}
"""Per schema, the fields that identify a record (its index time comes on top): what must match one-to-one."""
_PRICE_SCALE = 1_000_000_000


class Market(Protocol):
    """What the audit needs of a configured market: its name and the Databento roots it captures."""

    @property
    def name(self) -> str: ...
    @property
    def futures_root(self) -> str: ...
    @property
    def options_root(self) -> str: ...


class StoredSymbols(Protocol):
    """What the audit needs of a store: its libraries by name (ArcticDB `Library` objects)."""

    def has_library(self, name: str) -> bool: ...
    def library(self, name: str) -> Any: ...


@dataclass(frozen=True)
class AuditLine:
    """One symbol's comparison: rows stored, ground-truth rows up to its watermark, missing and duplicated."""

    symbol: str
    stored: int
    truth: int
    missing: int
    duplicated: int


def audit_store(
    store: StoredSymbols, model: MarketModel, record_path: Path | None, markets: Sequence[Market]
) -> list[AuditLine]:
    """Audit every futures/options data symbol of `markets` against the ground-truth file at `record_path`."""
    if record_path is None:
        raise ValueError("the venue was started without record_path: there is no ground truth to audit against")
    recorded = read_truth(record_path)
    lines = []
    for library_name, kinds in _LIBRARY_KINDS.items():
        if not store.has_library(library_name):
            continue
        library = store.library(library_name)
        listed = library.list_symbols()
        for market in markets:
            ids = instrument_ids(model, market, kinds)
            for schema in RECORD_KEYS:
                symbol = f"{market.name}.{schema}"
                parts = _parts(symbol, listed)
                if parts:
                    stored = pd.concat([_utc(library.read(part).data) for part in parts])
                    truth = truth_frame(recorded, schema, ids)
                    lines.append(_compare(f"{library_name}/{symbol}", schema, stored, truth))
    return lines


def _parts(symbol: str, listed: Sequence[str]) -> list[str]:
    """The stored symbols holding `symbol`'s rows in index order: the whole symbol, then its UTC days in order."""
    day = re.compile(re.escape(symbol) + r"\.\d{4}-\d{2}-\d{2}")
    return ([symbol] if symbol in listed else []) + sorted(s for s in listed if day.fullmatch(s))


def read_truth(record_path: Path) -> db.DBNStore:
    """The ground-truth file as Databento's `DBNStore`. The venue may be appending a batch right now: a partial
    last record is cut off (it is newer than anything stored)."""
    data = record_path.read_bytes()
    end = 8 + int.from_bytes(data[4:8], "little")  # "DBN", version, metadata length, metadata
    while end < len(data) and end + 4 * data[end] <= len(data):  # a record's first byte: its length in words
        end += 4 * data[end]
    return db.DBNStore.from_bytes(data[:end])


def instrument_ids(model: MarketModel, market: Market, kinds: frozenset[str]) -> frozenset[int]:
    """The venue's instruments of `market` of `kinds` ("F" futures, "C"/"P" options)."""
    root = market.futures_root if kinds == frozenset("F") else market.options_root
    return frozenset(i.instrument_id for i in model.instruments if i.kind in kinds and i.parent.split(".")[0] == root)


def truth_frame(recorded: db.DBNStore, schema: str, instrument_ids: frozenset[int]) -> pd.DataFrame:
    """The recorded records of `schema` and `instrument_ids` as Databento's `to_df` gives them (fixed prices)."""
    frame = recorded.to_df(schema=schema, price_type="fixed", map_symbols=False)
    return frame[frame["instrument_id"].isin(instrument_ids)]


def _compare(name: str, schema: str, stored: pd.DataFrame, truth: pd.DataFrame) -> AuditLine:
    if stored.empty:
        return AuditLine(name, 0, 0, 0, 0)
    newest = stored.index.max()
    got, want = _rows(stored[stored.index < newest], schema), _rows(truth[truth.index < newest], schema)
    edge_got, edge_want = _rows(stored[stored.index == newest], schema), _rows(truth[truth.index == newest], schema)
    missing = sum((want - got).values())
    duplicated = sum((got - want).values()) + sum((edge_got - edge_want).values())
    return AuditLine(name, len(stored), sum(want.values()) + sum(edge_got.values()), missing, duplicated)


def _rows(frame: pd.DataFrame, schema: str) -> Counter[tuple[Any, ...]]:
    values = [pd.DatetimeIndex(frame.index).asi8, *(canonical(frame[c]) for c in RECORD_KEYS[schema])]
    return Counter(zip(*values, strict=True))


def canonical(column: pd.Series) -> Any:
    """One form for both sides: datetimes as UTC ns, prices as fixed-point ints (UNDEF for NaN), integers as they
    are, the rest as text."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return pd.DatetimeIndex(column).asi8
    if pd.api.types.is_integer_dtype(column):
        return column.to_numpy()
    if pd.api.types.is_float_dtype(column):
        values = column.to_numpy()
        fixed = np.round(np.nan_to_num(values) * _PRICE_SCALE).astype(np.int64)
        return np.where(np.isnan(values), dbn.UNDEF_PRICE, fixed)
    return column.astype(str).to_numpy()


def _utc(frame: pd.DataFrame) -> pd.DataFrame:
    """ArcticDB hands back naive datetimes holding UTC values: make them UTC again."""
    out = frame.copy()
    for name in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[name]) and getattr(out[name].dt, "tz", None) is None:
            out[name] = out[name].dt.tz_localize("UTC")
    if isinstance(out.index, pd.DatetimeIndex) and out.index.tz is None:
        out.index = out.index.tz_localize("UTC")
    return out
