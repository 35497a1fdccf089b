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

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from hydra_daemon.config import MarketConfig
from hydra_daemon.pipelines.chain import ChainEvent, ChainSnapshot, ChainState, events_from_frame, snapshot_chain
from hydra_daemon.pipelines.records import MarketFrame

UNDERLYING_SUFFIX = ".FUT"
_Routed = tuple[int, tuple[str, ...], ChainEvent]  # (ts_recv, target markets, event)


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

        With `snapshots=False` (warm start from the store, Historical gap fills — whose batches are not in time
        order across schemas) the crossed boundaries are skipped, never snapshotted later with newer records in.
        """
        taken: list[MarketSnapshot] = []
        for ts_recv, targets, event in heapq.merge(*self._event_lists(frames), key=lambda item: item[0]):
            if self._next_boundary is not None and ts_recv >= self._next_boundary:
                if snapshots:
                    taken.extend(self.snapshot_all(self._next_boundary))
                self._next_boundary = None
            if self._next_boundary is None:
                self._next_boundary = self._boundary_after(ts_recv)
            for market in targets:
                self.chains[market].apply(event)
            self.last_event_ns = ts_recv if self.last_event_ns is None else max(self.last_event_ns, ts_recv)
        return taken

    def close(self) -> list[MarketSnapshot]:
        """Snapshots at the last record's time (session end); none if nothing arrived since the last close."""
        if self.last_event_ns is None or self.last_event_ns == self._closed_ns:
            return []
        self._closed_ns = self.last_event_ns
        return self.snapshot_all(self.last_event_ns)

    def snapshot_all(self, at_ns: int) -> list[MarketSnapshot]:
        """Every market's chain as of `at_ns`; trims the futures mid histories afterwards."""
        snapshots = [MarketSnapshot(name, snapshot_chain(state, at_ns)) for name, state in self.chains.items()]
        for state in self.chains.values():
            state.forget_stale_history()
        return snapshots

    def _boundary_after(self, ts_ns: int) -> int:
        return (ts_ns // self.interval_ns + 1) * self.interval_ns

    def _event_lists(self, frames: Sequence[MarketFrame]) -> list[Iterator[_Routed]]:
        lists: list[Iterator[_Routed]] = []
        for item in frames:
            targets = self._targets.get(item.market, ())
            if targets:
                lists.append(_routed(events_from_frame(item.schema, item.frame), targets))
        return lists


def _routed(events: Sequence[ChainEvent], targets: tuple[str, ...]) -> Iterator[_Routed]:
    for event in events:
        yield event.ts_recv, targets, event
