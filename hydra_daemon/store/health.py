"""Storage faults: a full LMDB map or disk, or an LMDB store that is no longer writable (directory or files made
read-only, a filesystem remounted read-only), is a fault the daemon reports and survives, not a crash loop.

`StorageStatus` fills the store's `StoreUsage` (what the health answer shows): ``problem`` once an LMDB commit failed
(saying what to do; the process then writes no more, see `StorageFaultError`), the LMDB map's high-water mark
against its size (health degrades from 80 %), and the versions maintenance pruned. LMDB never shrinks its file:
freed pages (pruned versions) are reused, so the file size is the map's high-water mark, a safe upper bound of its
use.

A failed LMDB write is a fault whatever the error says: a disk with less room than the commit needs cuts LMDB's write
short, reported as ``EIO`` (`LOW_DISK_BYTES` tells that full disk from an I/O error).

Why no write may follow a failed LMDB commit in the same process: measured with arcticdb 6.28 — after
``mdb_txn_commit`` failed (no space, or ``EPERM`` on an immutable ``data.mdb``), the next append to that library
crashed the process (segfault, or ``double free`` at exit) even once the cause was gone. Reads stay fine.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from pathlib import Path

import structlog
from arcticdb.adapters.lmdb_library_adapter import parse_query
from arcticdb.exceptions import LmdbMapFullError

from hydra_daemon.errors import UserError
from hydra_daemon.store.usage import StoreUsage

__all__ = [
    "StorageFaultError",
    "StorageFullError",
    "StorageStatus",
    "StoreUnwritableError",
    "is_out_of_space",
    "is_unwritable",
    "map_size_bytes",
    "unwritable_message",
]

log = structlog.get_logger()

_ARCTICDB_DEFAULT_MAP_SIZE = 400 * 1024**3  # ArcticDB's LMDB default when the URI names none
_DISK_FULL = ("No space left on device", "ENOSPC", "Disk quota exceeded")
_UNWRITABLE = ("Operation not permitted", "Permission denied", "Read-only file system")
_UNWRITABLE_ERRNOS = (errno.EPERM, errno.EACCES, errno.EROFS)
_LMDB_CALL = re.compile(r"\bmdb_\w+:")
"""An LMDB call failed (ArcticDB's ``lmdb::runtime_error(mdb_txn_commit: ...)``): the environment is poisoned."""
LOW_DISK_BYTES = 256 * 1024**2
"""Free space under the store below which a failed LMDB write is taken for a full disk: a disk with less room than a
commit needs cuts LMDB's write short, which LMDB reports as ``EIO`` ("short write, filesystem full?"), not
``ENOSPC``."""


def map_size_bytes(uri: str) -> int:
    """The LMDB map size ArcticDB maps for a store URI (per library: every library is its own LMDB environment), read
    with ArcticDB's own parser of the query, so health divides by the very map it uses: its decimal units (``3TB`` is
    3e12 bytes, not 3 TiB), the last of repeated ``map_size`` values, ``;`` as a separator too."""
    return parse_query(uri.partition("?")[2]).map_size or _ARCTICDB_DEFAULT_MAP_SIZE


def is_map_full(error: BaseException) -> bool:
    """True if `error` says the LMDB map is full: ArcticDB raises `LmdbMapFullError` when a put meets the limit, but
    a commit meeting it (LMDB saving its free list) surfaces as its generic error naming ``MDB_MAP_FULL``."""
    return isinstance(error, LmdbMapFullError) or "MDB_MAP_FULL" in str(error)


def is_out_of_space(error: BaseException) -> bool:
    """True if `error` says the LMDB map or the disk is full."""
    if is_map_full(error):
        return True
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(marker in str(error) for marker in _DISK_FULL)


def is_unwritable(error: BaseException) -> bool:
    """True if `error` says the store's files may not be written (permissions, immutable, read-only filesystem)."""
    if isinstance(error, OSError) and error.errno in _UNWRITABLE_ERRNOS:
        return True
    return any(marker in str(error) for marker in _UNWRITABLE)


class StorageFaultError(UserError, RuntimeError):
    """An LMDB commit failed earlier in this process: it writes no more (see the module docstring); what was committed
    stays intact and capture resumes from its watermarks in the next process. The operator's to fix (the message says
    how): one line, never a traceback."""


class StorageFullError(StorageFaultError):
    """The store ran out of space: no more writes until the daemon restarts (a full map needs a larger ``map_size``
    at open)."""


class StoreUnwritableError(StorageFaultError):
    """The LMDB store is not writable: at open, one `error:` line; while running, no more writes in this process, and
    once it is writable again the daemon exits with status 1 for systemd to restart it (`StorageStatus.cleared`)."""


def unwritable_message(store_dir: Path, error: BaseException) -> str:
    """What is wrong and what to do when the LMDB store at `store_dir` may not be written."""
    return (
        f"store {store_dir} is not writable ({_first_line(error)}): make {store_dir} and the files under it writable "
        "for the daemon's user (remount the filesystem read-write, fix ownership or mode, chattr -i)"
    )


class StorageStatus:
    """Thread-safe fault state of one opened store plus its LMDB map usage."""

    def __init__(self, lmdb_dir: Path | None, map_size: int | None, uri_for_hint: str) -> None:
        self._lmdb_dir = lmdb_dir
        self._map_size = map_size
        self._uri_for_hint = uri_for_hint
        self._lock = threading.Lock()
        self._fault: str | None = None
        self._fault_type: type[StorageFaultError] = StorageFullError
        self._retrying: str | None = None
        self._pruned = 0

    def write_failed(self, error: BaseException, what: str) -> bool:
        """Record `error` if it stops this process's writes — a lack of space, or an LMDB store no longer writable
        (returns True); the log line says how to fix it. Other errors (e.g. S3 answering 503) are the caller's to
        retry."""
        if self.record_fault(error, what):
            return True
        with self._lock:
            self._retrying = f"writes to store {self._uri_for_hint} failing ({_first_line(error)}) writing {what}"
        return False

    def record_fault(self, error: BaseException, what: str) -> bool:
        """Record `error` if it stops this process's writes (lack of space, LMDB store not writable); True if so."""
        if is_out_of_space(error):
            self._space_fault(error, what)
            return True
        if self._lmdb_dir is not None and is_unwritable(error):
            self._unwritable_fault(error, what)
            return True
        if self._lmdb_dir is not None and _LMDB_CALL.search(str(error)):
            self._lmdb_fault(self._lmdb_dir, error, what)
            return True
        return False

    def write_succeeded(self) -> None:
        """A write went through: writes that failed before (an S3 outage) work again."""
        with self._lock:
            self._retrying = None

    def _unwritable_fault(self, error: BaseException, what: str) -> None:
        where = self._lmdb_dir
        reason = f"store {where} is not writable ({_first_line(error)}) writing {what}"
        hint = (
            f"make {where} and the files under it writable again for the daemon's user (remount the filesystem "
            "read-write, fix ownership or mode, chattr -i); writes stay stopped until then, and once it is writable "
            "the daemon exits with status 1 so systemd restarts it and capture resumes from its watermarks; "
            "committed data is intact"
        )
        self._record(StoreUnwritableError, reason, hint, "storage_unwritable", error)

    def _lmdb_fault(self, where: Path, error: BaseException, what: str) -> None:
        """Any other failed LMDB write (see the module docstring: no write may follow it): a short write on a full
        disk, or an I/O error."""
        free = _free_bytes(where)
        if free is not None and free < LOW_DISK_BYTES:
            self._space_fault(error, f"{what} ({free // 1024**2} MB free under {where})")
            return
        free_text = "unknown" if free is None else f"{free // 1024**2} MB"
        reason = f"LMDB write failed writing {what} ({_first_line(error)}; free under {where}: {free_text})"
        hint = (
            f"check the disk under {where} (dmesg, df -h, the filesystem's health), then restart the daemon; "
            "committed data is intact and capture resumes from its watermarks"
        )
        self._record(StorageFaultError, reason, hint, "storage_write_failed", error)

    def _space_fault(self, error: BaseException, what: str) -> None:
        if is_map_full(error):
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
        self._record(StorageFullError, reason, hint, "storage_full", error)

    def _record(self, kind: type[StorageFaultError], reason: str, hint: str, event: str, error: BaseException) -> None:
        with self._lock:
            first = self._fault is None
            if first:
                self._fault, self._fault_type = f"{reason}: {hint}", kind
        if first:
            log.error(event, reason=reason, hint=hint, error=_first_line(error))

    def require_space(self) -> None:
        """Raise `StorageFaultError` (its kind) once an LMDB commit failed: this process writes no more."""
        with self._lock:
            fault, kind = self._fault, self._fault_type
        if fault is not None:
            raise kind(f"store writes stopped: {fault}")

    def require_writable(self, library: str, what: str) -> None:
        """`require_space`, then record and raise `StoreUnwritableError` if ``library``'s LMDB data file is no longer
        writable. Checked before each write because ArcticDB's ``list_symbols`` compacts its symbol list (a write) and
        ignores that write's failure (measured with arcticdb 6.28): the environment is then poisoned unrecorded, and
        the next write crashed the process (SIGSEGV). One ``access`` call per write; a store made read-only after it
        still takes the path of a recorded failed write."""
        self.require_space()
        data = None if self._lmdb_dir is None else self._lmdb_dir / library / "data.mdb"
        if data is not None and data.exists() and not os.access(data, os.W_OK):
            self._unwritable_fault(_write_error(data), what)
            self.require_space()

    @property
    def lmdb(self) -> bool:
        """True for an LMDB store (S3 has no environment to poison)."""
        return self._lmdb_dir is not None

    @property
    def failed(self) -> bool:
        """True once a write fault stopped this process's writes."""
        with self._lock:
            return self._fault is not None

    def cleared(self) -> bool:
        """True if writes stopped because the store was not writable and now it is: the store directory, every
        library's directory and LMDB files (``access(W_OK)`` sees read-only mounts, modes and the immutable flag)."""
        with self._lock:
            unwritable = self._fault_type is StoreUnwritableError and self._fault is not None
        if not unwritable or self._lmdb_dir is None:
            return False
        paths = [self._lmdb_dir, *self._lmdb_dir.glob("*"), *self._lmdb_dir.glob("*/*.mdb")]
        return all(os.access(path, os.W_OK) for path in paths)

    def pruned(self, versions: int) -> None:
        """Count versions maintenance deleted."""
        with self._lock:
            self._pruned += versions

    def usage(self, *, lease_held: bool) -> StoreUsage:
        """The store's usage for health and metrics."""
        with self._lock:
            fault, pruned, retrying = self._fault, self._pruned, self._retrying
        return StoreUsage(self._map_used(), self._map_size, pruned, lease_held, fault, retrying)

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


def _free_bytes(where: Path) -> int | None:
    """Bytes the daemon's user may still write on the filesystem of `where` (None: unknown)."""
    try:
        stat = os.statvfs(where)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def _write_error(path: Path) -> OSError:
    """The error opening ``path`` for writing gives (``access`` only says no): EPERM for the immutable flag, EROFS on
    a read-only mount, EACCES for modes."""
    try:
        os.close(os.open(path, os.O_WRONLY))
    except OSError as error:
        return error
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__
