"""Feature store: one bitemporal table per (market, feature) in the ``features`` library."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal import BITEMPORAL_COLUMNS
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.symbols import FEATURES, feature_symbol

VALUE = "value"


class FeatureStore:
    """Write and read features point-in-time. Frames hold ``as_of``, ``available_at``, ``value`` and optional key
    columns (e.g. ``expiration``); every other column is a key."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def write_feature(
        self,
        market: str,
        name: str,
        frame: pd.DataFrame,
        *,
        ingested_at: pd.Timestamp | None = None,
        revised_at: pd.Timestamp | None = None,
    ) -> int:
        """Record new or changed feature values (revisions; a changed one available no earlier than ``revised_at``
        when given, see `BitemporalTable.record`); return the number of rows written."""
        self._store.require_writable()
        for column in ("as_of", "available_at", VALUE):
            if column not in frame.columns:
                raise ValueError(f"feature {feature_symbol(market, name)}: frame lacks column {column!r}")
        keys = ("as_of", *(c for c in frame.columns if c not in ("as_of", "available_at", VALUE)))
        table = self._table(market, name, keys)
        try:
            written = table.record(
                frame,
                value_columns=[VALUE],
                available_at=frame["available_at"],
                ingested_at=ingested_at if ingested_at is not None else pd.Timestamp.now(tz="UTC"),
                revised_at=revised_at,
            )
        except ValueError:
            raise  # the frame is wrong (validation), not the store: health keeps saying what the store does
        except Exception as error:
            self._store.status.write_failed(error, f"{FEATURES}/{table.symbol}")
            raise
        return len(written)

    def read_feature(
        self,
        market: str,
        name: str,
        at: dt.datetime | None = None,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> pd.DataFrame:
        """Rows with ``as_of`` in ``[start, end]`` (either open): every revision if ``at`` is None, else the values
        known at ``at`` (latest revision per key)."""
        symbol = feature_symbol(market, name)
        library = self._store.library(FEATURES)
        stored_columns = library.get_description(symbol).columns if library.has_symbol(symbol) else []
        extra_keys = [c.name for c in stored_columns if c.name not in (*BITEMPORAL_COLUMNS, VALUE)]
        table = self._table(market, name, ("as_of", *extra_keys))
        return table.history(start, end) if at is None else table.point_in_time(at, start, end)

    def _table(self, market: str, name: str, keys: tuple[str, ...]) -> BitemporalTable:
        symbol = feature_symbol(market, name)
        lock = self._store.symbol_lock(FEATURES, symbol)
        return BitemporalTable(self._store.library(FEATURES), symbol, keys, lock=lock)
