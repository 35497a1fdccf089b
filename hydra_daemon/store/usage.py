"""What the store reports about its own capacity, for health and metrics (the store fills it; the runtime reads it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoreUsage:
    """`size_bytes`: bytes the store occupies; `map_size_bytes`: the LMDB map size (None on S3, which has none);
    `versions_pruned`: versions removed by retention so far; `lease_held`: the writer lease is ours;
    `problem`: a condition that stops writes (disk or map full, store not writable, lease lost), None when writes can
    proceed; `retrying`: the last write failed for a reason retrying may cure (S3 errors), None once one succeeds."""

    size_bytes: int | None = None
    map_size_bytes: int | None = None
    versions_pruned: int = 0
    lease_held: bool = True
    problem: str | None = None
    retrying: str | None = None

    @property
    def map_fraction(self) -> float | None:
        """How full the LMDB map is (0..1), None without a map."""
        if self.size_bytes is None or not self.map_size_bytes:
            return None
        return self.size_bytes / self.map_size_bytes
