"""Append-only, per-schema record tapes: Live sessions are cursors into them, Historical queries slice them."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from hydra_daemon.sim.market import SCHEMAS, Emission

_PRUNE_CHUNK = 4096


@dataclass
class _SchemaTape:
    base: int = 0  # absolute index of entries[0]
    keys: list[int] = field(default_factory=list)
    published: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    entries: list[Emission] = field(default_factory=list)


class Tape:
    """Every emitted record, per schema, in emission order; entries older than `history_ns` are dropped.

    Indexes are absolute (they survive pruning); `seq` is a global emission counter used to merge schemas.
    """

    def __init__(self, history_ns: int) -> None:
        self.history_ns = history_ns
        self._tapes = {schema: _SchemaTape() for schema in SCHEMAS}
        self._seq = 0

    def append(self, emissions: Iterable[Emission]) -> None:
        for emission in emissions:
            tape = self._tapes[emission.schema]
            tape.keys.append(emission.key_ns)
            tape.published.append(emission.published_ns)
            tape.seqs.append(self._seq)
            tape.entries.append(emission)
            self._seq += 1

    def prune(self, now_ns: int) -> None:
        """Drop entries with key older than now - history (in chunks, to keep appends cheap)."""
        cutoff = now_ns - self.history_ns
        for tape in self._tapes.values():
            count = bisect.bisect_left(tape.keys, cutoff)
            if count >= _PRUNE_CHUNK or (count and count == len(tape.keys)):
                del tape.keys[:count], tape.published[:count], tape.seqs[:count], tape.entries[:count]
                tape.base += count

    def base(self, schema: str) -> int:
        """Absolute index of the oldest retained entry."""
        return self._tapes[schema].base

    def end(self, schema: str) -> int:
        """Absolute index one past the newest entry."""
        tape = self._tapes[schema]
        return tape.base + len(tape.entries)

    def first_index(self, schema: str, key_ns: int) -> int:
        """Absolute index of the first retained entry with key >= key_ns."""
        tape = self._tapes[schema]
        return tape.base + bisect.bisect_left(tape.keys, key_ns)

    def first_published_index(self, schema: str, ns: int) -> int:
        """Absolute index of the first retained entry published at or after `ns` (Live replay)."""
        tape = self._tapes[schema]
        return tape.base + bisect.bisect_left(tape.published, ns)

    def last_key(self, schema: str) -> int | None:
        tape = self._tapes[schema]
        return tape.keys[-1] if tape.keys else None

    def get(self, schema: str, index: int) -> tuple[int, Emission]:
        """(seq, emission) at absolute `index` (caller keeps base <= index < end)."""
        tape = self._tapes[schema]
        i = index - tape.base
        return tape.seqs[i], tape.entries[i]

    def slice(self, schema: str, start_ns: int, end_ns: int) -> list[Emission]:
        """Entries with start_ns <= key < end_ns."""
        tape = self._tapes[schema]
        lo = bisect.bisect_left(tape.keys, start_ns)
        hi = bisect.bisect_left(tape.keys, end_ns)
        return tape.entries[lo:hi]
