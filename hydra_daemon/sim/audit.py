"""Compare what a store holds with the venue's recorded ground truth (the `--record` DBN file).

For every market-data symbol the daemon wrote, the rows strictly before the symbol's newest index time must equal
the ground truth's rows of the same schema and instruments (as multisets), and the rows at the newest time must be a
subset of the truth's: anything else is a missing or duplicated record. Used by the demo and the tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import databento_dbn as dbn
import pandas as pd

from hydra_daemon.config import MarketConfig
from hydra_daemon.databento.decode import SymbolMap, decode_records, layout
from hydra_daemon.sim.market import MarketModel
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.symbols import FUTURES, OPTIONS, data_symbol

_LIBRARY_KINDS = {FUTURES: frozenset("F"), OPTIONS: frozenset("CP")}
_SCHEMAS = ("ohlcv-1d", "ohlcv-1m", "mbp-1", "definition", "statistics")


@dataclass(frozen=True)
class AuditLine:
    """One symbol's comparison: rows stored, ground-truth rows up to its watermark, missing and duplicated."""

    symbol: str
    stored: int
    truth: int
    missing: int
    duplicated: int


def audit_store(
    store: Store, model: MarketModel, record_path: Path | None, markets: Sequence[MarketConfig]
) -> list[AuditLine]:
    """Audit every futures/options data symbol of `markets` against the ground-truth file at `record_path`."""
    if record_path is None:
        raise ValueError("the venue was started without record_path: there is no ground truth to audit against")
    decoded = dbn.DBNDecoder().write_and_decode(record_path.read_bytes())
    records = [r for r in decoded if not isinstance(r, dbn.Metadata)]
    lines = []
    for library_name, kinds in _LIBRARY_KINDS.items():
        if not store.has_library(library_name):
            continue
        library = store.library(library_name)
        for market in markets:
            truth = _truth(records, model, market, kinds)
            for schema in _SCHEMAS:
                symbol = data_symbol(market.name, schema)
                if library.has_symbol(symbol):
                    stored = restore_utc(library.read(symbol).data)
                    lines.append(_compare(f"{library_name}/{symbol}", schema, stored, truth.get(schema)))
    return lines


def _truth(
    records: list[Any], model: MarketModel, market: MarketConfig, kinds: frozenset[str]
) -> dict[str, pd.DataFrame]:
    roots = {market.futures_root} if kinds == frozenset("F") else {market.options_root}
    wanted = {
        i.instrument_id: i.raw_symbol for i in model.instruments if i.kind in kinds and i.parent.split(".")[0] in roots
    }
    symbols = SymbolMap({})
    symbols.learn(list(wanted), list(wanted.values()), market.name)
    decoded = decode_records([r for r in records if r.instrument_id in wanted], symbols, market=market.name)
    return {item.schema: item.frame for item in decoded.frames}


def _compare(name: str, schema: str, stored: pd.DataFrame, truth: pd.DataFrame | None) -> AuditLine:
    if stored.empty:
        return AuditLine(name, 0, 0, 0, 0)
    truth = truth if truth is not None else stored.iloc[0:0]
    newest = stored.index.max()
    got, want = _rows(stored[stored.index < newest], schema), _rows(truth[truth.index < newest], schema)
    edge_got, edge_want = _rows(stored[stored.index == newest], schema), _rows(truth[truth.index == newest], schema)
    missing = sum((want - got).values())
    duplicated = sum((got - want).values()) + sum((edge_got - edge_want).values())
    return AuditLine(name, len(stored), sum(want.values()) + sum(edge_got.values()), missing, duplicated)


def _rows(frame: pd.DataFrame, schema: str) -> Counter[tuple[Any, ...]]:
    columns = [c for c in layout(schema).key_columns if c in frame.columns]
    values = [pd.DatetimeIndex(frame.index).asi8, *(_canonical(frame[c]) for c in columns)]
    return Counter(zip(*values, strict=True))


def _canonical(column: pd.Series) -> Any:
    if pd.api.types.is_datetime64_any_dtype(column):
        return pd.DatetimeIndex(column).asi8
    return column.astype(str).to_numpy()
