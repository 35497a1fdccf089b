"""The COT panel: every market's COT revisions in one symbol, so `Reader.cot_panel` reads 50 markets in one read.

ArcticDB costs about 1 ms per symbol read whatever its size (50 one-row symbols of the 52 COT columns took 52 ms),
so a cross-section read from the per-market ``<MARKET>.cot`` symbols cannot take less than ~50 ms. The panel
(`symbols.COT_PANEL`) holds the same rows with a market number column, and its version metadata records, per market
number, the market symbol and the (version number, creation time ns) its rows were read from. A reader trusts a
market's panel rows only while the market symbol's latest version is that very version (one listing of the library's
latest versions says), so a stale panel — a crash between a market's append and the panel's rewrite, a compaction, a
market deleted and written again — costs a per-market read, never a wrong answer.

The writer keeps it current: `refresh_cot_panel` after every COT cycle and backfill and in every maintenance run
(after compaction, before the daily snapshot) rewrites it when any market symbol moved — only its metadata when the
markets moved by maintenance's compaction alone (same rows, new versions); otherwise it costs one listing and one
metadata read (~2 ms). A market whose columns or dtypes differ from the others' (or that has a
`MARKET_COLUMN`) is left out, so the panel's rows of a market are exactly what its own symbol returns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

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
_LEFT_OUT_KEY = "hydra_cot_panel_left_out"
Version = tuple[int, int]
"""(version number, creation time ns) of a stored version: a symbol deleted and written again cannot repeat it."""


def latest_versions(library: Library, snapshot: str | None = None) -> dict[str, Version]:
    """`Version` of every symbol of ``library`` — the latest, or the one ``snapshot`` holds — in one listing."""
    listed = library.list_versions(snapshot=snapshot, latest_only=snapshot is None, skip_snapshots=True)
    return {key.symbol: (key.version, int(info.date.value)) for key, info in listed.items() if not info.deleted}


def sources_of(metadata: object) -> list[tuple[str, Version]] | None:
    """Per market number (`MARKET_COLUMN`), its symbol and the version the panel's rows of it were read from
    (None: not a panel's metadata)."""
    if not isinstance(metadata, dict) or not isinstance(metadata.get(_METADATA_KEY), list):
        return None
    return [(str(symbol), (int(version), int(created))) for symbol, version, created in metadata[_METADATA_KEY]]


def refresh_cot_panel(store: Store, compacted: Mapping[str, tuple[Version, Version]] | None = None) -> bool:
    """Rewrite the panel (writer store) if any market symbol moved since it was built; whether it wrote.

    ``compacted`` (from maintenance) maps a market symbol to the version it was compacted from and the version that
    compaction wrote, holding the same rows: when every market that moved only went that way, the panel keeps its
    data and gets the new versions as metadata (`write_metadata`: a version sharing the data, no copy)."""
    if not store.has_library(COT):
        return False
    library = store.library(COT)
    with store.symbol_lock(COT, COT_PANEL):
        versions = latest_versions(library)
        markets = {symbol: version for symbol, version in versions.items() if market_of_cot(symbol) is not None}
        if not markets:
            return False
        built = _Built.of(library.read_metadata(COT_PANEL).metadata) if COT_PANEL in versions else None
        if built is not None and built.versions() == markets:
            return False
        store.require_writable()  # the lease still held, and no LMDB write after a failed commit
        if built is not None and built.only_compacted(markets, compacted or {}):
            library.write_metadata(COT_PANEL, built.moved_to(markets).to_metadata(), prune_previous_versions=False)
            return True
        panel, built = _build(library, sorted(markets))
        library.write(COT_PANEL, panel, metadata=built.to_metadata(), prune_previous_versions=False)
        return True


@dataclass(frozen=True)
class _Built:
    """What a panel version was built from: per market number, the symbol and version its rows are (`sources_of`),
    and the versions of the markets left out (another schema), so a panel leaving some out is still current."""

    numbered: list[tuple[str, Version]]
    left_out: dict[str, Version]

    @classmethod
    def of(cls, metadata: object) -> _Built | None:
        numbered = sources_of(metadata)
        if numbered is None or not isinstance(metadata, dict):
            return None
        left = metadata.get(_LEFT_OUT_KEY, [])
        return cls(numbered, {str(symbol): (int(version), int(created)) for symbol, version, created in left})

    def to_metadata(self) -> dict[str, list[list[str | int]]]:
        """Lists, not tuples: msgpack keeps lists (tuples would be pickled)."""
        left_out = list(self.left_out.items())
        return {
            _METADATA_KEY: [[s, v, t] for s, (v, t) in self.numbered],
            _LEFT_OUT_KEY: [[s, v, t] for s, (v, t) in left_out],
        }

    def versions(self) -> dict[str, Version]:
        return dict(self.numbered) | self.left_out

    def only_compacted(self, markets: dict[str, Version], compacted: Mapping[str, tuple[Version, Version]]) -> bool:
        """Whether the same symbols are each at the version built from, or compacted from it into their current one
        (same rows)."""
        built = self.versions()
        if built.keys() != markets.keys():
            return False
        return all(built[s] == markets[s] or compacted.get(s) == (built[s], markets[s]) for s in markets)

    def moved_to(self, markets: dict[str, Version]) -> _Built:
        return _Built(
            [(symbol, markets[symbol]) for symbol, _ in self.numbered], {s: markets[s] for s in self.left_out}
        )


def _build(library: Library, symbols: list[str]) -> tuple[pd.DataFrame, _Built]:
    """The panel of ``symbols`` (their latest versions, read in one batch) sorted by ``ingested_at``, and what it
    was built from; markets whose schema differs from the most common one are left out."""
    frames: dict[str, tuple[pd.DataFrame, Version]] = {}
    for symbol, result in zip(symbols, library.read_batch(symbols), strict=True):
        if not isinstance(result, DataError):  # deleted since the listing: gone from the next listing too
            frames[symbol] = (restore_utc(result.data), (result.version, result.timestamp))
    schemas = {symbol: _schema(frame) for symbol, (frame, _) in frames.items()}
    common = Counter(schemas.values()).most_common(1)[0][0] if schemas else ()
    kept = [s for s in frames if schemas[s] == common and MARKET_COLUMN not in frames[s][0].columns]
    parts = [frames[s][0].assign(**{MARKET_COLUMN: np.int64(n)}) for n, s in enumerate(kept)]
    panel = pd.concat(parts).sort_index(kind="stable") if parts else pd.DataFrame()
    left_out = {s: frames[s][1] for s in frames if s not in kept}
    return panel, _Built([(s, frames[s][1]) for s in kept], left_out)


def _schema(frame: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    return tuple((str(name), str(dtype)) for name, dtype in frame.dtypes.items())
