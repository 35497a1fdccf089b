"""Storage faults: a full LMDB map or a full disk is a fault the daemon reports and survives, not a crash loop.

`StorageStatus` fills the store's `StoreUsage` (what the health answer shows): ``problem`` once a write failed for
lack of space (saying what to do; the process then writes no more, see `StorageFullError`), the LMDB map's
high-water mark against its size (health degrades from 80 %), and the versions maintenance pruned. LMDB never
shrinks its file: freed pages (pruned versions) are reused, so the file size is the map's high-water mark, a safe
upper bound of its use.
"""

from __future__ import annotations

import errno
import re
import threading
from pathlib import Path

import structlog
from arcticdb.exceptions import LmdbMapFullError

from hydra_daemon.store.usage import StoreUsage

__all__ = ["StorageFullError", "StorageStatus", "is_out_of_space", "map_size_bytes"]

log = structlog.get_logger()

_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_MAP_SIZE = re.compile(r"(?:^|[?&])map_size=(\d+)\s*([KMGT]?B?)(?:&|$)", re.IGNORECASE)
_ARCTICDB_DEFAULT_MAP_SIZE = 400 * 1024**3  # ArcticDB's LMDB default when the URI names none
_DISK_FULL = ("No space left on device", "ENOSPC", "Disk quota exceeded")


def map_size_bytes(uri: str) -> int:
    """The LMDB map size a store URI asks for (per library: every library is its own LMDB environment)."""
    match = _MAP_SIZE.search(uri)
    if match is None:
        return _ARCTICDB_DEFAULT_MAP_SIZE
    return int(match[1]) * _UNITS[match[2].upper()]


def is_out_of_space(error: BaseException) -> bool:
    """True if `error` says the LMDB map or the disk is full."""
    if isinstance(error, LmdbMapFullError):
        return True
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(marker in str(error) for marker in _DISK_FULL)


class StorageFullError(RuntimeError):
    """The store ran out of space earlier in this process: no more writes until the daemon restarts.

    LMDB cannot go on after a commit failed for lack of disk (the next write crashed the process in a test), and a
    full map needs a larger ``map_size`` at open, so this process stops writing altogether; what was committed stays
    intact and capture resumes from its watermarks after the restart."""


class StorageStatus:
    """Thread-safe fault state of one opened store plus its LMDB map usage."""

    def __init__(self, lmdb_dir: Path | None, map_size: int | None, uri_for_hint: str) -> None:
        self._lmdb_dir = lmdb_dir
        self._map_size = map_size
        self._uri_for_hint = uri_for_hint
        self._lock = threading.Lock()
        self._fault: str | None = None
        self._pruned = 0

    def write_failed(self, error: BaseException, what: str) -> bool:
        """Record `error` if it is a lack of space (returns True); the log line says how to fix it."""
        if not is_out_of_space(error):
            return False
        if isinstance(error, LmdbMapFullError):
            reason = f"LMDB map full writing {what}"
            hint = (
                f"grow map_size in [storage] arctic_uri (now {self._uri_for_hint}; e.g. double it) and restart "
                "the daemon; committed data is intact and capture resumes from its watermarks"
            )
        else:
            reason = f"disk full writing {what}"
            hint = (
                "free disk space under the store and restart the daemon; committed data is intact and capture "
                "resumes from its watermarks"
            )
        with self._lock:
            first = self._fault is None
            self._fault = f"{reason}: {hint}"
        if first:
            log.error("storage_full", reason=reason, hint=hint, error=str(error).splitlines()[0][:300])
        return True

    def require_space(self) -> None:
        """Raise `StorageFullError` once a write failed for lack of space (this process writes no more)."""
        with self._lock:
            fault = self._fault
        if fault is not None:
            raise StorageFullError(f"store writes stopped: {fault}")

    @property
    def failed(self) -> bool:
        """True while writes fail for lack of space."""
        with self._lock:
            return self._fault is not None

    def pruned(self, versions: int) -> None:
        """Count versions maintenance deleted."""
        with self._lock:
            self._pruned += versions

    def usage(self, *, lease_held: bool) -> StoreUsage:
        """The store's usage for health and metrics."""
        with self._lock:
            fault, pruned = self._fault, self._pruned
        return StoreUsage(self._map_used(), self._map_size, pruned, lease_held, fault)

    def _map_used(self) -> int | None:
        """The fullest library's high-water mark (every library is its own LMDB map of `map_size`)."""
        if self._lmdb_dir is None:
            return None
        sizes = [0]
        try:
            for data in self._lmdb_dir.glob("*/data.mdb"):
                sizes.append(data.stat().st_size)
        except OSError:
            return None
        return max(sizes)
