"""The COT panel: every market's COT revisions in one symbol, so `Reader.cot_panel` reads 50 markets in one read.

ArcticDB costs about 1 ms per symbol read whatever its size (50 one-row symbols of the 52 COT columns took 52 ms),
so a cross-section read from the per-market ``<MARKET>.cot`` symbols cannot take less than ~50 ms. The panel
(`symbols.COT_PANEL`) holds the same rows with a market number column, and its version metadata records, per market
number, the market symbol and the (version number, creation time ns) its rows were read from. A reader trusts a
market's panel rows only while the market symbol's latest version is that very version (one listing of the library's
latest versions says), so a stale panel — a crash between a market's append and the panel's rewrite, a compaction, a
market deleted and written again — costs a per-market read, never a wrong answer.

The writer keeps it current: `refresh_cot_panel` after every COT cycle and backfill and in every maintenance run
(after compaction, before the daily snapshot) rewrites it when any market symbol moved; otherwise it costs one
listing and one metadata read (~2 ms). A market whose columns or dtypes differ from the others' (or that has a
`MARKET_COLUMN`) is left out, so the panel's rows of a market are exactly what its own symbol returns.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
from arcticdb.version_store.library import DataError, Library

from hydra_daemon.store.arctic import Store
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.symbols import COT, COT_PANEL, market_of_cot

MARKET_COLUMN = "market_number"
"""The panel's column saying whose row it is: the position of the row's market symbol in the panel's `sources_of`
(a number, not the market's name: decoding and grouping 52k strings would cost more than the whole pick)."""
_METADATA_KEY = "hydra_cot_panel"
Version = tuple[int, int]
"""(version number, creation time ns) of a stored version: a symbol deleted and written again cannot repeat it."""


def latest_versions(library: Library, snapshot: str | None = None) -> dict[str, Version]:
    """`Version` of every symbol of ``library`` — the latest, or the one ``snapshot`` holds — in one listing."""
    listed = library.list_versions(snapshot=snapshot, latest_only=snapshot is None)
    return {key.symbol: (key.version, int(info.date.value)) for key, info in listed.items() if not info.deleted}


def sources_of(metadata: object) -> list[tuple[str, Version]] | None:
    """Per market number (`MARKET_COLUMN`), its symbol and the version the panel's rows of it were read from
    (None: not a panel's metadata)."""
    if not isinstance(metadata, dict) or not isinstance(metadata.get(_METADATA_KEY), list):
        return None
    return [(str(symbol), (int(version), int(created))) for symbol, version, created in metadata[_METADATA_KEY]]


def refresh_cot_panel(store: Store) -> bool:
    """Rewrite the panel (writer store) if any market symbol moved since it was built; whether it wrote."""
    if not store.has_library(COT):
        return False
    library = store.library(COT)
    with store.symbol_lock(COT, COT_PANEL):
        versions = latest_versions(library)
        markets = {symbol: version for symbol, version in versions.items() if market_of_cot(symbol) is not None}
        if not markets:
            return False
        if COT_PANEL in versions:
            built = sources_of(library.read_metadata(COT_PANEL).metadata)
            if built is not None and dict(built) == markets:
                return False
        panel, sources = _build(library, sorted(markets))
        store.status.require_space()
        library.write(COT_PANEL, panel, metadata={_METADATA_KEY: sources}, prune_previous_versions=False)
        return True


def _build(library: Library, symbols: list[str]) -> tuple[pd.DataFrame, list[list[str | int]]]:
    """The panel of ``symbols`` (their latest versions, read in one batch) sorted by ``ingested_at``, and the
    version each market's rows came from; markets whose schema differs from the most common one are left out."""
    frames: dict[str, tuple[pd.DataFrame, Version]] = {}
    for symbol, result in zip(symbols, library.read_batch(symbols), strict=True):
        if not isinstance(result, DataError):  # deleted since the listing: left out, read per market
            frames[symbol] = (restore_utc(result.data), (result.version, result.timestamp))
    schemas = {symbol: _schema(frame) for symbol, (frame, _) in frames.items()}
    common = Counter(schemas.values()).most_common(1)[0][0] if schemas else ()
    kept = [s for s in frames if schemas[s] == common and MARKET_COLUMN not in frames[s][0].columns]
    parts = [frames[s][0].assign(**{MARKET_COLUMN: np.int64(n)}) for n, s in enumerate(kept)]
    panel = pd.concat(parts).sort_index(kind="stable") if parts else pd.DataFrame()
    return panel, [[s, *frames[s][1]] for s in kept]  # lists: msgpack keeps them (tuples would be pickled)


def _schema(frame: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    return tuple((str(name), str(dtype)) for name, dtype in frame.dtypes.items())
