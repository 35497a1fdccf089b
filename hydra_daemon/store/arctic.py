"""Opening the ArcticDB store: one ``Arctic`` per store per process, the writer lease, libraries, snapshots."""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import re
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import arcticdb
import pandas as pd
import structlog
from arcticdb.version_store.library import Library

from hydra_daemon.store.health import (
    StorageFaultError,
    StorageFullError,
    StorageStatus,
    StoreUnwritableError,
    is_unwritable,
    map_size_bytes,
    unwritable_message,
)
from hydra_daemon.store.lease import (
    FileLease,
    LeaseLostError,
    S3Lease,
    StoreLockedError,
    lease_key,
    refuse_if_legacy_writer,
    s3_client,
)
from hydra_daemon.store.quiesce import wait_for_idle_pools
from hydra_daemon.store.resident import release_pages, store_mappings, trim_heap
from hydra_daemon.store.symbols import LIBRARIES
from hydra_daemon.store.uri import LmdbLocation, parse_uri, redact_uri, validate_uri
from hydra_daemon.store.usage import StoreUsage

__all__ = [
    "LeaseLostError",
    "StorageFaultError",
    "StorageFullError",
    "Store",
    "StoreLockedError",
    "StoreReadOnlyError",
    "StoreUnwritableError",
]

log = structlog.get_logger()

LIBRARY_OPTIONS = arcticdb.LibraryOptions(dynamic_schema=True, rows_per_segment=100_000)
CONFIG_LIBRARY = "_arctic_cfg"
"""The LMDB environment beside the libraries where ArcticDB records which libraries exist."""
WRITER_ARCTICDB_CONFIG = {"StorageLock.WaitMs": 10, "SymbolList.MaxDelta": 100}
"""ArcticDB settings of the writer process (process-wide: a Reader in its own process keeps ArcticDB's defaults).
A listing compacts a library's symbol list when it finds it uncompacted or longer than ``MaxDelta`` keys (by
default a random 300-700): the writer lists each library that gained a symbol (`Maintenance`), so it compacts first
and a Reader's listing has no write to do. Compacting takes ArcticDB's storage lock, whose one attempt sleeps
``WaitMs`` (1 s by default, for object stores) holding the GIL, which stalled the daemon's event loop. A Reader
compacting at the same moment (a library created seconds ago) makes one of them skip it, or both compact the same
list."""
_SNAPSHOT_LABEL = re.compile(r"[A-Za-z0-9_-]+")


class StoreReadOnlyError(RuntimeError):
    """A write was attempted through a store opened with ``writer=False``."""


class _ArcticRegistry:
    """One ``Arctic`` per store per process (LMDB must not be opened twice in one process), reference counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[arcticdb.Arctic, int]] = {}

    def acquire(self, key: str, uri: str) -> arcticdb.Arctic:
        with self._lock:
            arctic, count = self._entries.get(key) or (arcticdb.Arctic(uri), 0)
            self._entries[key] = (arctic, count + 1)
            return arctic

    def release(self, key: str) -> None:
        with self._lock:
            arctic, count = self._entries[key]
            if count <= 1:
                del self._entries[key]
            else:
                self._entries[key] = (arctic, count - 1)


_ARCTICS = _ArcticRegistry()
# Registered at import, so it runs after the exit handlers of whatever imports the store (they may still read).
atexit.register(wait_for_idle_pools)


class Store:
    """An opened ArcticDB store. ``writer=True`` takes the single-writer lease (flock on LMDB, lease object on S3).

    Methods are blocking: call them from a worker thread, never on the event loop.
    """

    def __init__(self, uri: str, arctic: arcticdb.Arctic, key: str, lease: FileLease | S3Lease | None) -> None:
        self.uri = uri
        self.writer = lease is not None
        self._arctic: arcticdb.Arctic | None = arctic
        self._key = key
        self._lease = lease
        self._libraries: dict[str, Library] = {}
        self._lock = threading.Lock()
        self._symbol_locks: dict[tuple[str, str], threading.Lock] = {}
        self._closed = False
        self.quiet = False
        location = parse_uri(uri)
        lmdb_dir = location.path if isinstance(location, LmdbLocation) else None
        self.lmdb_dir = lmdb_dir  # None on S3
        self.status = StorageStatus(lmdb_dir, map_size_bytes(uri) if lmdb_dir else None, redact_uri(uri))

    @classmethod
    def open(cls, uri: str, *, writer: bool, quiet: bool = False) -> Store:
        """Open the store at ``uri``; :class:`StoreLockedError` if ``writer`` and another process holds the lease,
        :class:`StoreUnwritableError` if an LMDB store's files may not be written.
        ``quiet`` logs neither the opening nor the closing (a research `Reader` stays silent unless asked)."""
        location = parse_uri(validate_uri(uri))
        name = redact_uri(uri)
        lease: FileLease | S3Lease | None = None
        if writer:
            for setting, value in WRITER_ARCTICDB_CONFIG.items():
                arcticdb.config.set_config_int(setting, value)
        if isinstance(location, LmdbLocation):
            real = location.path.resolve()  # one lease (and one Arctic) per directory, whatever path names it
            key = str(real)
            if writer:
                refuse_if_legacy_writer(real, name)
                lease = _file_lease(lock_path(real), name)
        else:
            key = f"s3://{location.host}:{location.port}/{location.bucket}/{location.path_prefix}"
            if writer:
                lease = S3Lease.acquire(s3_client(location), location.bucket, lease_key(location), name)
        try:
            store = cls(uri, _ARCTICS.acquire(key, uri), key, lease)
            if writer:
                store._delete_staged_segments()
        except BaseException as error:
            if lease is not None:
                lease.release()
            if isinstance(location, LmdbLocation) and is_unwritable(error):
                raise StoreUnwritableError(unwritable_message(location.path, error)) from None
            raise
        store.quiet = quiet
        if not quiet:
            log.info("store.opened", store=name, writer=writer)
        return store

    def library(self, name: str) -> Library:
        """Library ``name``; created if missing when writing, ``LookupError`` if missing when reading."""
        self._require_open()
        with self._lock:
            if name not in self._libraries:
                if not self.writer and not self._handle().has_library(name):
                    raise LookupError(f"store {redact_uri(self.uri)} has no library {name!r} yet")
                guarded = self.writer and self.status.lmdb
                options = LIBRARY_OPTIONS if self.writer else None
                library = self._create(name, options) if guarded else self._get(name, options)
                if guarded:
                    library = cast(Library, _GuardedLmdb(library, name, self.status, threading.RLock()))
                self._libraries[name] = library
            return self._libraries[name]

    def _get(self, name: str, options: arcticdb.LibraryOptions | None) -> Library:
        return self._handle().get_library(name, create_if_missing=self.writer, library_options=options)

    def _create(self, name: str, options: arcticdb.LibraryOptions | None) -> Library:
        """`_get` for a writer's LMDB store, guarded as `_GuardedLmdb` guards a library's writes: creating a library
        writes the store's own ``_arctic_cfg`` environment."""
        what = f"create library {name}"
        self.status.require_writable(CONFIG_LIBRARY, what)
        try:
            return self._get(name, options)
        except Exception as error:
            self.status.record_fault(error, what)
            raise

    def has_library(self, name: str) -> bool:
        """True if library ``name`` exists."""
        self._require_open()
        return bool(self._handle().has_library(name))

    def symbol_lock(self, library: str, symbol: str) -> threading.Lock:
        """The lock every write to ``library``/``symbol`` holds: appends, compaction and pruning of one symbol from
        different threads would otherwise lose data (ArcticDB has no transactions)."""
        with self._lock:
            return self._symbol_locks.setdefault((library, symbol), threading.Lock())

    def written_symbols(self) -> set[tuple[str, str]]:
        """(library, symbol) of every symbol this process has written to (took the lock of) since it opened."""
        with self._lock:
            return set(self._symbol_locks)

    def usage(self) -> StoreUsage:
        """Map usage, pruned versions, lease and write faults (the problem says what to do), for health and metrics."""
        lease_problem = None
        if self._lease is not None:
            try:
                self._lease.check()
            except LeaseLostError as lost:
                lease_problem = str(lost)
        usage = self.status.usage(lease_held=lease_problem is None)
        if lease_problem is not None and usage.problem is None:
            usage = dataclasses.replace(usage, problem=lease_problem)
        return usage

    def fault_cleared(self) -> str | None:
        """What cleared, if this process stopped writing for a reason a fresh process no longer has: the LMDB store is
        writable again, or the S3 lease another process took over is free again. None otherwise (also for a full
        disk or map: that needs the operator). Blocking (file checks, an S3 read)."""
        if self.status.cleared():
            return f"store {redact_uri(self.uri)} is writable again"
        if isinstance(self._lease, S3Lease) and self._lease.free_again():
            return f"the writer lease of store {redact_uri(self.uri)} is free again"
        return None

    def require_writable(self) -> None:
        """Raise unless this store may write now (opened as writer, lease still held, not out of space)."""
        self._require_open()
        if self._lease is None:
            raise StoreReadOnlyError(f"store {redact_uri(self.uri)} was opened read-only (writer=False)")
        self._lease.check()
        self.status.require_space()

    def renew_lease(self) -> None:
        """Extend the writer lease now (S3; a background thread also renews it); ``LeaseLostError`` if taken over."""
        self.require_writable()
        assert self._lease is not None
        self._lease.renew()

    def snapshot(self, label: str, libraries: Collection[str]) -> str:
        """Pin the current version of every symbol of ``libraries`` (those a pipeline's cycle wrote) as snapshot
        ``<label>-<UTC time>``. Only those: until the daily snapshot supersedes it, a snapshot keeps the small
        intraday segments of every symbol it pins beside their merged copies, and another pipeline's streams are
        the daily snapshot's to hold."""
        self.require_writable()
        if not _SNAPSHOT_LABEL.fullmatch(label):
            raise ValueError(f"snapshot label {label!r} must match {_SNAPSHOT_LABEL.pattern}")
        name = f"{label}-{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S%fZ}"
        for library_name in (name for name in LIBRARIES if name in libraries):
            if self.has_library(library_name):
                library = self.library(library_name)
                if library.list_symbols():
                    library.snapshot(name)
        log.info("store.snapshot", store=redact_uri(self.uri), snapshot=name)
        return name

    def release_mapped_pages(self) -> None:
        """Drop the LMDB pages this process has touched from its RSS (they refault from the page cache when read
        again; see `hydra_daemon.store.resident`), so a process that runs for months keeps a flat RSS. Nothing to do
        on S3. Holds the store open meanwhile, so the mappings it advises cannot be unmapped under it."""
        if self.lmdb_dir is None:
            return
        with self._lock:
            self._require_open()
            release_pages(store_mappings(self.lmdb_dir))

    def forget_cached_versions(self) -> None:
        """Drop ArcticDB's cache of every symbol's versions (each library keeps, for every symbol it ever looked up,
        the version map it loaded: ~9 KB a symbol, so a process that runs for months, with a new day partition of
        each stream every day, would grow without bound) and return the freed heap (`resident.trim_heap`). The next
        access to a symbol reloads its map, which the daily pass has just rebuilt (a key or two)."""
        with self._lock:
            self._require_open()
            for library in self._libraries.values():
                library._nvs.version_store.flush_version_map()
        trim_heap()

    def close(self) -> None:
        """Release the lease (if writer) and this process's handle on the store. Idempotent."""
        with self._lock:  # not while `release_mapped_pages` advises the mappings this handle keeps alive
            if self._closed:
                return
            self._closed = True
            if self.status.failed and self.status.lmdb:
                _never_free(self._arctic, *self._libraries.values())
            self._libraries.clear()
            self._arctic = None  # no native handle may outlive close(): ArcticDB tearing one down at exit can crash
            _ARCTICS.release(self._key)
        if self._lease is not None:
            self._lease.release()
        if not self.quiet:
            log.info("store.closed", store=redact_uri(self.uri), writer=self.writer)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _handle(self) -> arcticdb.Arctic:
        self._require_open()
        assert self._arctic is not None
        return self._arctic

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"store {redact_uri(self.uri)} is closed")

    def _delete_staged_segments(self) -> None:
        """Drop staged-but-never-finalised segments a crashed writer may have left (ArcticDB #1993)."""
        for library_name in self._handle().list_libraries():
            library = self._handle().get_library(library_name)
            for symbol in library.get_staged_symbols():
                log.warning("store.staged_segments_deleted", library=library_name, symbol=symbol)
                library.delete_staged_data(symbol)


_READS = frozenset(
    {
        "name",
        "read",
        "read_batch",
        "read_metadata",
        "read_metadata_batch",
        "head",
        "tail",
        "has_symbol",
        "list_versions",
        "list_snapshots",
        "get_description",
        "get_description_batch",
        "get_staged_symbols",
        "options",
        "compact_data_explain_plan",
        "is_symbol_fragmented",
    }
)


class _GuardedLmdb:
    """A writer's LMDB library (or an object reached through it, e.g. ``_nvs``): every call but the known reads holds
    the library's lock, refuses once the store stopped writing or its data file is no longer writable, and records
    its own failure before letting go.

    After a commit failed, the next write to that LMDB environment crashes the process (see `store.health`); without
    this, another thread's write could start between a failure and its being recorded. LMDB runs one write
    transaction per environment at a time anyway. Known reads run unguarded (they may fail after a failed commit —
    ``MDB_PANIC`` — but as exceptions)."""

    def __init__(self, target: Any, library: str, status: StorageStatus, lock: threading.RLock) -> None:
        self._target, self._library, self._status, self._lock = target, library, status, lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name in _READS:
            return attr
        if not callable(attr):
            return _GuardedLmdb(attr, self._library, self._status, self._lock)
        return self._guarded(attr, name)

    def _guarded(self, call: Callable[..., Any], name: str) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            what = f"{name} {args[0] if args else ''}".strip()
            with self._lock:
                self._status.require_writable(self._library, what)
                try:
                    return call(*args, **kwargs)
                except Exception as error:
                    self._status.record_fault(error, what)
                    raise

        return guarded


def _never_free(*handles: object) -> None:
    """Keep native handles alive until the process ends: after an LMDB commit failed, tearing its environment down
    crashed the process (``double free or corruption``, measured with arcticdb 6.28), so the exit status systemd
    acts on would be SIGABRT's instead of ours. The kernel reclaims everything at exit anyway."""
    for handle in handles:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(handle))


def _file_lease(path: Path, store: str) -> FileLease:
    """`FileLease.acquire`; one line saying what to do when the lock file's directory may not be written."""
    try:
        return FileLease.acquire(path, store)
    except OSError as error:
        if not is_unwritable(error):
            raise
        raise StoreUnwritableError(
            f"store {store}: cannot create its writer lock file {path} ({error.strerror}): make {path.parent} "
            "writable for the daemon's user (under systemd's ProtectSystem=strict, list it in ReadWritePaths=)"
        ) from None


LOCK_FILE = "hydra-writer.lock"


def lock_path(store_dir: Path) -> Path:
    """The writer lock file inside an LMDB store directory: every path that reaches the store (a symlink, a bind
    mount into a container) finds the same file, and it is writable wherever the store is (systemd's
    ReadWritePaths= names the store alone)."""
    return store_dir / LOCK_FILE
