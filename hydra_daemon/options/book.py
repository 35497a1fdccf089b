"""The chains of every configured market, fed from decoded stream frames, snapshotted on event-time boundaries (pure).

One Live session carries all markets. Records are attributed by their parent subscription (SymbolMappingMsg
``stype_in_symbol``): ``{options_root}.OPT`` routes to the market's name; ``{futures_root}.FUT`` routes to the label
``"{futures_root}.FUT"`` (see `stream_parents`) — those futures definitions and quotes only feed the underlying price
of every market written on that root and are not stored by the options pipeline.

Snapshots are taken in the data's event time (`ts_recv`), so an accelerated venue produces them: when the first
record at or after the next multiple of `interval_ns` arrives, every market's chain is snapshotted AT that boundary
(holding exactly the records before it), then the record is applied. Boundaries with no record in between are not
repeated. `close()` snapshots at the last record's time (session end). Records that are not live (the warm start
from the store after a restart, Historical gap fills) update the chains and move the schedule past them without
snapshots: a snapshot never contains a record newer than its time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hydra_daemon.config import MarketConfig
from hydra_daemon.databento.decode import MarketFrame
from hydra_daemon.options.chain import (
    EVENT_COLUMNS,
    ChainSnapshot,
    ChainState,
    QuoteBatch,
    events_from_frame,
    snapshot_chain,
)

UNDERLYING_SUFFIX = ".FUT"


def underlying_label(market: MarketConfig) -> str:
    """The routing label of a market's underlying futures records, e.g. ``"CL.FUT"`` for LO options."""
    return f"{market.futures_root}{UNDERLYING_SUFFIX}"


def stream_parents(markets: Sequence[MarketConfig]) -> dict[str, str]:
    """Parent symbol → routing label: ``HE.OPT`` → ``HE`` (a market), ``HE.FUT`` → ``HE.FUT`` (underlying).

    ValueError if two markets share an options root (their records could not be told apart)."""
    parents: dict[str, str] = {}
    for market in markets:
        parent = f"{market.options_root}.OPT"
        if parent in parents:
            raise ValueError(
                f"markets {parents[parent]!r} and {market.name!r} both use options_root {market.options_root!r}; "
                "give each market its own options root in the config"
            )
        parents[parent] = market.name
    parents.update({underlying_label(m): underlying_label(m) for m in markets})
    return parents


def is_underlying(label: str) -> bool:
    """Whether a frame's routing label is an underlying-futures label rather than a market."""
    return label.endswith(UNDERLYING_SUFFIX)


@dataclass(frozen=True)
class MarketSnapshot:
    """One market's chain snapshot."""

    market: str
    snapshot: ChainSnapshot


@dataclass
class ChainBook:
    """Per-market `ChainState`s plus the event-time snapshot schedule."""

    markets: Sequence[MarketConfig]
    interval_ns: int
    chains: dict[str, ChainState] = field(default_factory=dict)
    last_event_ns: int | None = None
    """The newest record ingested with snapshots (in time order): where a session's close snapshot is taken."""
    _applied_ns: int | None = None  # the newest record applied at all (gap fills and warm starts too)
    _next_boundary: int | None = None
    _closed_ns: int | None = None
    _targets: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.interval_ns <= 0:
            raise ValueError(f"snapshot interval must be > 0 ns, got {self.interval_ns}")
        for market in self.markets:
            self.chains.setdefault(market.name, ChainState())
            self._targets[market.name] = (market.name,)
        for market in self.markets:
            label = underlying_label(market)
            self._targets[label] = (*self._targets.get(label, ()), market.name)

    def ingest(self, frames: Sequence[MarketFrame], *, snapshots: bool = True) -> list[MarketSnapshot]:
        """Apply the records of `frames` in `ts_recv` order; return the snapshots of the boundaries crossed.

        The boundaries crossed are found over all records' times first; the records between two of them are then
        applied together (quotes in bulk, see `ChainState.apply_quotes`), which gives the state record-by-record
        application would: the newest record wins whatever the order within a stretch.

        With `snapshots=False` (warm start from the store, Historical gap fills — whose batches are not in time
        order across schemas) the crossed boundaries are skipped, never snapshotted later with newer records in.
        """
        parts = [
            _Part(targets, item.schema, item.frame)
            for item in frames
            if (targets := self._targets.get(item.market)) and item.schema in EVENT_COLUMNS and not item.frame.empty
        ]
        if not parts:
            return []
        times = np.sort(np.concatenate([part.times for part in parts]))
        cuts = self._crossed_boundaries(times)
        taken: list[MarketSnapshot] = []
        for stretch in range(len(cuts) + 1):
            if stretch and snapshots:
                taken.extend(self.snapshot_all(cuts[stretch - 1]))
            self._apply_stretch(parts, np.asarray(cuts, dtype=np.int64), stretch)
        newest = int(times[-1])
        self._applied_ns = newest if self._applied_ns is None else max(self._applied_ns, newest)
        if snapshots:
            self.last_event_ns = newest if self.last_event_ns is None else max(self.last_event_ns, newest)
        return taken

    def _crossed_boundaries(self, times: np.ndarray) -> list[int]:
        """Boundaries the sorted `times` cross, in order (a boundary is set after the first record past the last
        one, so empty intervals are not repeated); advances the schedule."""
        crossed: list[int] = []
        boundary = self._next_boundary if self._next_boundary is not None else self._boundary_after(int(times[0]))
        while (at := int(np.searchsorted(times, boundary, side="left"))) < len(times):
            crossed.append(boundary)
            boundary = self._boundary_after(int(times[at]))
        self._next_boundary = boundary
        return crossed

    def _apply_stretch(self, parts: Sequence[_Part], cuts: np.ndarray, stretch: int) -> None:
        """Apply the records between boundary `stretch - 1` and `stretch`: definitions and statistics, then quotes."""
        for part in sorted(parts, key=lambda p: p.schema == "mbp-1"):
            rows = part.rows_in(cuts, stretch)
            if rows is not None and not rows.any():
                continue
            if part.schema == "mbp-1":
                quotes = part.quotes() if rows is None else part.quotes().take(rows)
                for market in part.targets:
                    self.chains[market].apply_quotes(quotes)
                continue
            events = events_from_frame(part.schema, part.frame if rows is None else part.frame[rows])
            for market in part.targets:
                chain = self.chains[market]
                for event in events:
                    chain.apply(event)

    def close(self) -> list[MarketSnapshot]:
        """Snapshots at the last record's time (session end); none if nothing arrived since the last close, nor
        while the chains hold records newer than the last one ingested in time order: a gap fill cut short (it
        arrives schema by schema) would be snapshotted half applied, and stored its mark would rule out the gap's
        own snapshots for good."""
        if self.last_event_ns is None or self.last_event_ns == self._closed_ns:
            return []
        if self._applied_ns is not None and self._applied_ns > self.last_event_ns:
            return []
        self._closed_ns = self.last_event_ns
        return self.snapshot_all(self.last_event_ns)

    def snapshot_all(self, at_ns: int) -> list[MarketSnapshot]:
        """Every market's chain as of `at_ns`; trims the futures mid histories afterwards."""
        snapshots = [MarketSnapshot(name, snapshot_chain(state, at_ns)) for name, state in self.chains.items()]
        for state in self.chains.values():
            state.forget_expired(at_ns)
            state.forget_stale_history()
        return snapshots

    def _boundary_after(self, ts_ns: int) -> int:
        return (ts_ns // self.interval_ns + 1) * self.interval_ns


class _Part:
    """One frame's records routed to `targets`, with their times (and quotes as columns, built once)."""

    def __init__(self, targets: tuple[str, ...], schema: str, frame: pd.DataFrame) -> None:
        self.targets = targets
        self.schema = schema
        self.frame = frame
        self.times = pd.DatetimeIndex(frame.index).asi8
        self._quotes: QuoteBatch | None = None

    def quotes(self) -> QuoteBatch:
        if self._quotes is None:
            self._quotes = QuoteBatch.from_frame(self.frame)
        return self._quotes

    def rows_in(self, cuts: np.ndarray, stretch: int) -> np.ndarray | None:
        """Mask of the rows between boundary `stretch - 1` and `stretch` (None: all rows, no boundary crossed)."""
        if not len(cuts):
            return None
        return np.searchsorted(cuts, self.times, side="right") == stretch
