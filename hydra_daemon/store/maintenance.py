"""Store maintenance, off the hot path: compaction, version pruning with a grace window, one snapshot per UTC day.

Every append writes a new version whose index lists every data segment of the symbol, and each small append is its
own segment; never compacted and never pruned, disk grows with appends instead of records. The writer process (it
holds the lease) runs `Maintenance.run_once` every `StorageConfig.maintenance_interval_s` in a worker thread:

- **merge** (intraday) every symbol's trailing small segments — the appends since the last merge, and the earlier
  merges no larger than twice what follows them (`merge_run`) — into one once that run holds `MERGED_ROWS` rows or
  has ``compact_every`` segments (market data, chains, COT, features alike), rewriting nothing else;
- **merge up** once per UTC day: the same size-tiered run, over every segment smaller than two thirds of
  ``rows_per_segment`` (ArcticDB's own notion of compacted), so the segment count, which every append's index write is
  proportional to, follows the rows; and rebuild the version map from the live versions (folded, it would still keep
  ~30 B for every version ever written, which every cold read decodes). A segment is rewritten only together with at
  least half its size of newer rows, so a row is rewritten a logarithmic number of times and a day's pass rewrites
  about a day of rows, never the symbol's whole history: each daily snapshot pins what that day rewrote, and
  `keep_daily_snapshots_days` of them cost about as many days of rows (a whole-symbol ``compact_data`` every day made
  each snapshot pin a copy of every symbol below ``rows_per_segment`` rows: disk grew with the square of history).
  A closed day partition (written once) gets all its trailing small segments merged, and ``compact_data`` compacts a
  symbol with small segments before large ones (a store of an earlier layout). A merge rewrites a slice of whole
  segments of at most ``rows_per_segment`` rows at a time (`_rewrite_tail`). All of it keeps the version metadata,
  so watermarks and bitemporal bounds stay on the latest version;
- **snapshot** ``daily-YYYYMMDD`` once per UTC day (right after the daily merge, so it pins merged segments), on
  the first run after the day ended: "what did the store hold at the end of day D" (day partitions of later days
  left out: it held none of their rows); only by a process that was running when the day ended, as one started
  later has written rows since (`_skip_daily_snapshot`); a daily snapshot older than
  ``keep_daily_snapshots_days`` is deleted, a pipeline's cycle snapshot once the daily snapshot of its day exists;
- **prune** versions superseded more than ``prune_grace_s`` ago (ArcticDB's version dates are wall time). A reader
  picks a version (cached up to 2 s) and reads its segments; deleting that version only after the grace window means
  a read in progress never loses its segments. The latest version is never deleted, nor one a snapshot pins;
- **refresh** the COT panel (`store.cot_panel`) when a COT symbol moved since it was built (only its metadata when
  the move was this run's compaction);
- **list** each library where a symbol appeared, which compacts its ArcticDB symbol list when due, so that no
  Reader's listing has to;
- **release** the LMDB pages the process has touched from its RSS (`Store.release_mapped_pages`), which otherwise
  grows with everything the process ever read (after each symbol merged and between a long prune's batches, so a
  daily pass's pages do not add up across symbols, and at the end of every run), and, after the daily pass,
  ArcticDB's cache of version maps (`Store.forget_cached_versions`), which otherwise holds every symbol ever looked
  up.

Day partitions of quotes and trades (`store.partitions`) are symbols like any other, but a partition older than its
stream's newest one is *closed*: the writer appends only after the stream's watermark, which lives in the newest
partition. A closed partition gets one full compaction (the first daily pass after it closed), is pruned down to its
latest version, and is then *settled*: no run looks at it again, so the work of every run, the daily one included, is
bounded by the partitions written recently, not by the history (after a restart, each is looked at once).

Point-in-time truth lives in the ``available_at`` columns, not in versions, so pruning never changes a PIT answer.
Each step holds the symbol's `Store.symbol_lock`, so it never interleaves with an append to the same symbol, and
checks the writer lease first (`Store.require_writable`): a run can outlast the lease's loss to another writer.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import structlog
from arcticdb.exceptions import NoSuchVersionException
from arcticdb.version_store.library import Library, VersionInfo

from hydra_daemon.store.arctic import Store
from hydra_daemon.store.cot_panel import Version, refresh_cot_panel
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.partitions import segment_slices
from hydra_daemon.store.symbols import COT, COT_PANEL, LIBRARIES, is_partitioned, split_partition

__all__ = [
    "DAILY_PREFIX",
    "Maintenance",
    "MaintenancePolicy",
    "MaintenanceReport",
    "daily_snapshot_name",
    "merge_run",
]

log = structlog.get_logger()

DAILY_PREFIX = "daily-"
MERGED_ROWS = 17_000
"""A segment of fewer rows is small: intraday merges gather those only, and merge them as soon as they hold this many
rows. ArcticDB 6.28 stores a segment of mbp-1 quotes of more than ~16,400 rows at 42 B/row, one of fewer at 47-48
(1,400 rows: 49; one 5 s flush of 700: 51), so a merge of fewer rows would cost more and be rewritten again. The step
is in the uint32 columns (sizes, instrument ids): one of more than 64 KB (16,384 rows) takes about half the bytes
under ArcticDB's LZ4 (2.9 -> 1.5 B/row each, measured column by column)."""
GROWTH = 2
"""A segment joins a merge run only if it has at most this many times the rows of the newer segments in the run."""
PRUNE_BATCH = 8
"""Versions deleted per ArcticDB ``delete`` call, oldest first, with the store pages released between calls. LMDB
reads the first page of each value it deletes, and the kernel maps the cached pages around it too (~70 KB a
segment). Deleting, in one call, the 166 versions a sliced merge of 680 segments (11.6 M rows) left peaked +48 MB;
in calls of 8, +1 MB (0.06 -> 0.18 s). Oldest first, a call frees only the segments no later version lists."""
_SNAPSHOT_DAY = re.compile(r"^daily-(\d{8})$|^[A-Za-z0-9_-]+?-(\d{8})T\d{6}\d*Z$")
"""The daemon's snapshot names (`daily_snapshot_name`, `Store.snapshot`); any other is a user's, never expired."""


@dataclass(frozen=True)
class MaintenancePolicy:
    """When to compact, how long superseded versions survive, how many daily snapshots are kept."""

    compact_every: int = 20
    prune_grace_s: float = 120.0
    keep_daily_snapshots_days: int = 30


@dataclass
class MaintenanceReport:
    """What one run did."""

    compacted: int = 0
    pruned_versions: int = 0
    snapshots_taken: list[str] = field(default_factory=list)
    snapshots_deleted: int = 0
    skipped_for_space: int = 0


def _newest_daily(libraries: Iterable[Library]) -> date | None:
    """The newest day any library has a daily snapshot of: a process restarted after it must not take that day's
    snapshot of a library created since (it would hold rows written after the day ended), nor merge that day again."""
    days = [
        _snapshot_day(name)
        for library in libraries
        for name in library.list_snapshots(load_metadata=False)
        if name.startswith(DAILY_PREFIX)
    ]
    return max((day for day in days if day is not None), default=None)


def daily_snapshot_name(day: date) -> str:
    """The snapshot holding the store as it was at the end of UTC ``day``."""
    return f"{DAILY_PREFIX}{day:%Y%m%d}"


class Maintenance:
    """Blocking (run in a worker thread); ``clock`` gives UTC ns and decides the day (the benchmark advances it);
    ``policy`` may be replaced between runs."""

    def __init__(
        self,
        store: Store,
        policy: MaintenancePolicy,
        *,
        clock: Callable[[], int] = time.time_ns,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        store.require_writable()
        self._store = store
        self.policy = policy
        self._clock = clock
        self._wall_clock = wall_clock
        self._started = False
        self._last_daily: date | None = None
        self._found: set[tuple[str, str]] | None = None
        self._symbols_listed: set[tuple[str, str]] = set()  # listed by this process since they appeared
        self._listed: dict[tuple[str, str], list[tuple[int, VersionInfo]]] = {}
        self._unchanged: dict[tuple[str, str], int | None] = {}
        self._closed_compacted: set[tuple[str, str]] = set()
        self._compacted_now: set[tuple[str, str]] = set()  # this run's: their version list predates the compaction
        self._settled: set[tuple[str, str]] = set()
        self._cot_compacted: dict[str, tuple[Version, Version]] = {}  # this run's: version before -> after
        self._pins: dict[tuple[str, str], dict[str, int]] = {}  # (library, snapshot): {symbol: version it pins}

    def run_once(self) -> MaintenanceReport:
        """Compact what is fragmented, take the daily snapshot when a day ended, drop expired snapshots, prune."""
        self._store.require_writable()
        report = MaintenanceReport()
        libraries = {n: self._store.library(n) for n in LIBRARIES if self._store.has_library(n)}
        symbols = sorted(
            (name, symbol)
            for name, symbol in (self._symbols(libraries) | self._store.written_symbols()) - self._settled
            if name in libraries and libraries[name].has_symbol(symbol)
        )
        first_run = not self._started
        if first_run:  # a restart: a day whose daily snapshot an earlier process took is done
            self._started = True
            self._last_daily = _newest_daily(libraries.values())
        day_ended = self._day_ended()
        closed = closed_parts(symbols)
        for name, symbol in symbols:
            self._compact(libraries[name], symbol, report, full=day_ended is not None, closed=(name, symbol) in closed)
        self._refresh_cot_panel(report)
        if day_ended is not None and first_run:
            self._skip_daily_snapshot(day_ended)
        elif day_ended is not None:
            later = [(n, s) for n, s in symbols if (part := split_partition(s)) is not None and part[1] > day_ended]
            self._daily_snapshot([libraries[n] for n in sorted({n for n, _ in symbols})], day_ended, later, report)
        kept = self._expire_snapshots(libraries, report)
        pinned = self._snapshot_pins(libraries, kept)
        for name, symbol in symbols:
            self._prune(libraries[name], symbol, pinned.get((name, symbol), set()), report)
        self._list_new_symbols(libraries, symbols)
        if day_ended is not None:
            self._store.forget_cached_versions()  # else every symbol ever looked up stays cached, day partitions too
        self._store.release_mapped_pages()  # compaction read and wrote much: keep the RSS flat (store.resident)
        if report.compacted or report.pruned_versions or report.snapshots_taken or report.snapshots_deleted:
            log.info(
                "store.maintenance",
                compacted=report.compacted,
                pruned_versions=report.pruned_versions,
                snapshots_taken=report.snapshots_taken,
                snapshots_deleted=report.snapshots_deleted,
            )
        return report

    def _symbols(self, libraries: dict[str, Library]) -> set[tuple[str, str]]:
        """The symbols stored when maintenance first ran (ArcticDB's list_symbols is slow: listed once; symbols
        written since are the store's `written_symbols`)."""
        if self._found is None:
            self._found = {(name, symbol) for name, library in libraries.items() for symbol in library.list_symbols()}
            self._symbols_listed |= self._found  # `_list_new_symbols` need not list them again
        return self._found

    def _list_new_symbols(self, libraries: dict[str, Library], symbols: list[tuple[str, str]]) -> None:
        """List each library where a symbol appeared since the last run (a day partition, a new feature or market):
        the listing compacts the library's symbol list if it has none yet or has grown long (`WRITER_ARCTICDB_CONFIG`),
        so a Reader's listing never has to (a write, from a process that only reads). ArcticDB makes one attempt at
        its lock and skips if another process holds it."""
        for name in sorted({name for name, symbol in symbols if (name, symbol) not in self._symbols_listed}):
            libraries[name].list_symbols()
        self._symbols_listed.update(symbols)

    def _compact(self, library: Library, symbol: str, report: MaintenanceReport, *, full: bool, closed: bool) -> None:
        """Light: merge the trailing run of small segments (the appends since the last merge) into one, leaving the
        rest untouched, so intraday compaction never rewrites large segments. Full (once a UTC day, before the
        daily snapshot): the same run up to nearly full segments, keeping the segment count — and with it every
        append's index write — proportional to the rows, not to the appends. A ``closed`` partition is compacted
        fully once (then only pruned until it is settled)."""
        key = (library.name, symbol)
        with self._store.symbol_lock(library.name, symbol):
            self._store.require_writable()  # before every symbol: a run takes long, the lease may be lost meanwhile
            self._listed[key] = live = _live_versions(library, symbol)
            if key in self._closed_compacted or (not full and self._unchanged.get(key) == live[-1][0]):
                return  # nothing appended since the last look: skip reading the index
            try:
                done = (
                    self._compact_daily(library, symbol, closed=closed) if full else self._merge_small(library, symbol)
                )
                self._unchanged[key] = None if done else live[-1][0]
                if done and library.name == COT:  # same rows, new version: the panel need not be rewritten
                    after = library.read_metadata(symbol)
                    before = (live[-1][0], int(live[-1][1].date.value))
                    self._cot_compacted[symbol] = (before, (after.version, after.timestamp))
            except Exception as error:
                if not self._store.status.write_failed(error, f"{library.name}/{symbol} (compaction)"):
                    raise
                report.skipped_for_space += 1
                return
        if full and closed:
            self._closed_compacted.add(key)
        if done:
            self._compacted_now.add(key)
            self._store.release_mapped_pages()  # before the next symbol's: a run's pages added up across symbols
        report.compacted += int(done)

    def _compact_daily(self, library: Library, symbol: str, *, closed: bool) -> bool:
        """Rebuild the version map from the live versions (`_rebuild_version_map`), then merge the trailing run of
        segments below two thirds of ``rows_per_segment``: size-tiered (`merge_run`), or all of them for a closed
        partition (written once: nothing will follow them); ``compact_data`` for small segments among large ones
        (what an earlier layout left), once. ``compact_data`` of a closed day partition (11.6 M quotes) touched
        store pages for ~45 B a row before releasing any (+159 MB for 3 M rows, +28 MB sliced)."""
        _rebuild_version_map(library, symbol)
        segments = library._nvs.read_index(symbol)  # the latest version's data segments, in row order
        rows = (segments["end_row"] - segments["start_row"]).to_numpy()
        large = rows >= library.options().rows_per_segment * 2 // 3  # compact_data's own tolerance
        if large.any() and not large[: np.flatnonzero(large)[-1]].all() and _compact_data(library, symbol):
            return True
        run = merge_run(rows, 2, large) if not closed else _small_tail(large)
        return _rewrite_tail(library, symbol, segments, run, self._store.release_mapped_pages)

    def _merge_small(self, library: Library, symbol: str) -> bool:
        """Merge the trailing run (`merge_run`) of small segments once it holds `MERGED_ROWS` rows (a busy symbol:
        the merged segment is large, never rewritten intraday) or has ``compact_every`` segments (a slow one: its
        index stays short)."""
        segments = library._nvs.read_index(symbol)
        rows = (segments["end_row"] - segments["start_row"]).to_numpy()
        run = merge_run(rows, 2, rows >= MERGED_ROWS)
        if run < self.policy.compact_every and rows[len(rows) - run :].sum() < MERGED_ROWS:
            run = 0
        return _rewrite_tail(library, symbol, segments, run, self._store.release_mapped_pages)

    def _refresh_cot_panel(self, report: MaintenanceReport) -> None:
        """Rebuild the COT panel if a COT symbol moved since it was built (compacted just now, or written by a cycle
        that crashed before rebuilding it), before the daily snapshot pins it (`store.cot_panel`)."""
        compacted, self._cot_compacted = self._cot_compacted, {}
        try:
            refresh_cot_panel(self._store, compacted)
        except Exception as error:
            if not self._store.status.write_failed(error, f"{COT}/{COT_PANEL}"):
                raise
            report.skipped_for_space += 1

    def _day_ended(self) -> date | None:
        """The UTC day that ended since the last daily snapshot (on the first run: yesterday), else None."""
        ended = datetime.fromtimestamp(self._clock() / 1e9, UTC).date() - timedelta(days=1)
        if self._last_daily is not None and self._last_daily >= ended:
            return None
        return ended

    def _daily_snapshot(
        self, libraries: list[Library], ended: date, later: list[tuple[str, str]], report: MaintenanceReport
    ) -> None:
        """Snapshot every library as ``daily-<ended>``, without the ``later`` day partitions (rows of days after
        ``ended``, which the store did not hold at its end: pinned, the new day's first appends would stay on disk
        beside their merged copy for the retention window)."""
        name = daily_snapshot_name(ended)
        for library in libraries:
            if name in library.list_snapshots(load_metadata=False):
                continue
            skipped = [symbol for library_name, symbol in later if library_name == library.name]
            self._store.require_writable()
            try:
                library.snapshot(name, skip_symbols=skipped)
            except NoSuchVersionException:
                continue  # nothing but later partitions in this library
            except Exception as error:
                if not self._store.status.write_failed(error, f"{library.name} snapshot {name}"):
                    raise
                report.skipped_for_space += 1
                return
            if name not in report.snapshots_taken:
                report.snapshots_taken.append(name)
        self._last_daily = ended

    def _skip_daily_snapshot(self, ended: date) -> None:
        """A process's first run takes no snapshot of a day that ended before it: the store already holds what this
        process wrote since it started (gap fills, a COT cycle, a backfill run while the daemon was stopped), which
        it did not hold at the end of that day, and ``available_at`` or an index time cannot tell all of it apart."""
        log.info(
            "store.daily_snapshot_skipped",
            day=ended.isoformat(),
            reason="the daemon was not running when the day ended",
        )
        self._last_daily = ended

    def _expire_snapshots(self, libraries: dict[str, Library], report: MaintenanceReport) -> set[tuple[str, str]]:
        """Daily snapshots older than the retention window go; a pipeline's cycle snapshot goes once the daily
        snapshot of its day (or a later one) exists: until then it pins that day's intraday segments, which the day's
        merges rewrite (kept, they would hold every day's quotes twice for the retention window). Returns the
        (library, snapshot) kept."""
        today = datetime.fromtimestamp(self._clock() / 1e9, UTC).date()
        oldest_kept = today - timedelta(days=self.policy.keep_daily_snapshots_days)
        kept = set()
        for library_name, library in libraries.items():
            days = {name: _snapshot_day(name) for name in library.list_snapshots(load_metadata=False)}
            dailies = [day for name, day in days.items() if day is not None and name.startswith(DAILY_PREFIX)]
            covered = max(dailies, default=None)
            for name, day in days.items():
                cycle_covered = (
                    day is not None and not name.startswith(DAILY_PREFIX) and covered is not None and day <= covered
                )
                if day is not None and (day < oldest_kept or cycle_covered):
                    self._store.require_writable()
                    library.delete_snapshot(name)
                    report.snapshots_deleted += 1
                else:
                    kept.add((library_name, name))
        return kept

    def _snapshot_pins(
        self, libraries: dict[str, Library], kept: set[tuple[str, str]]
    ) -> dict[tuple[str, str], set[int]]:
        """The versions each (library, symbol) has pinned by a snapshot. The daemon's snapshots never change (their
        names carry their time and are never reused), so each is read once, when first seen (one key listing every
        symbol): a version list with its snapshots reads every snapshot for every symbol listed, which grew with the
        snapshots kept times the symbols in the library (day partitions accumulate), and made each run slower with
        history. A user's snapshot may be deleted and taken again under its name: it is read on every run. Settled
        symbols are left out (never pruned again)."""
        for key in [key for key in self._pins if key not in kept or _snapshot_day(key[1]) is None]:
            del self._pins[key]
        for library_name, name in sorted(kept - self._pins.keys()):
            listed = libraries[library_name].list_versions(snapshot=name, skip_snapshots=True)
            self._pins[(library_name, name)] = {
                key.symbol: key.version for key in listed if (library_name, key.symbol) not in self._settled
            }
        pinned: dict[tuple[str, str], set[int]] = {}
        for (library_name, _), versions in self._pins.items():
            for symbol, version in versions.items():
                pinned.setdefault((library_name, symbol), set()).add(version)
        return pinned

    def _prune(self, library: Library, symbol: str, pinned: set[int], report: MaintenanceReport) -> None:
        """Delete versions superseded more than the grace window ago and not ``pinned`` by a snapshot, from the
        list `_compact` took (a version compaction just superseded keeps its place until the next run), then fold the
        symbol's version map: ArcticDB keeps a key per version written and per deletion until it is folded (into
        ~30 B per live version)."""
        cutoff = self._wall_clock() - self.policy.prune_grace_s
        with self._store.symbol_lock(library.name, symbol):
            self._store.require_writable()
            live = self._listed.pop((library.name, symbol))
            expired = [
                version
                for (version, _), (_, successor) in itertools.pairwise(live)
                if version not in pinned and successor.date.timestamp() <= cutoff
            ]
            batches = range(0, len(expired), PRUNE_BATCH)
            for start in batches:
                library.delete(symbol, versions=expired[start : start + PRUNE_BATCH])
                if len(batches) > 1:  # a few versions' pages wait for the run's end (reading the maps costs 2 ms)
                    self._store.release_mapped_pages()
            if expired:
                library._nvs.version_store._compact_version_map(symbol)  # else a ~600 B key per version and delete
        key = (library.name, symbol)
        if key in self._closed_compacted and key not in self._compacted_now and len(live) - len(expired) == 1:
            with self._store.symbol_lock(library.name, symbol):
                _rebuild_version_map(library, symbol)  # read for years: drop the day's deleted versions
            self._settled.add(key)  # compacted, one version, never written again
            self._unchanged.pop(key, None)
        self._compacted_now.discard(key)
        report.pruned_versions += len(expired)
        self._store.status.pruned(len(expired))


def merge_run(rows: np.ndarray, minimum: int, excluded: np.ndarray) -> int:
    """How many trailing segments (of ``rows`` rows each, in row order) to merge, 0 if fewer than ``minimum``:
    walking back from the newest, a segment joins while it is not ``excluded`` and has at most `GROWTH` times the
    rows already taken. Merged segments so form tiers growing towards the oldest (a binary counter), a row is
    rewritten O(log rows) times, and an old segment is never rewritten for a few new rows."""
    taken = count = 0
    for size, skip in zip(rows[::-1], excluded[::-1], strict=True):
        if skip or (count and size > GROWTH * taken):
            break
        taken += int(size)
        count += 1
    return count if count >= max(minimum, 2) else 0


def _small_tail(large: np.ndarray) -> int:
    """How many trailing segments are not ``large``; 0 if fewer than two (one is merged already)."""
    count = len(large) - (int(np.flatnonzero(large)[-1]) + 1 if large.any() else 0)
    return count if count >= 2 else 0


def _compact_data(library: Library, symbol: str) -> bool:
    plan = library.compact_data_explain_plan(symbol)
    if plan.num_row_slices_before <= plan.num_row_slices_after:
        return False
    library.compact_data(symbol, prune_previous_versions=False)
    return True


def _rewrite_tail(library: Library, symbol: str, segments: pd.DataFrame, run: int, release: Callable[[], None]) -> bool:
    """Rewrite the rows of the last ``run`` segments (none if 0) with ``update``, a slice of whole segments at a time
    (`segment_slices`): same rows, same order, same version metadata (watermarks, bitemporal bounds). ``release``
    drops the store pages a slice touched (`Store.release_mapped_pages`) before the next. The daily merge of a day
    partition (11.6 M quotes at the production cadence) in one update peaked 2.8 GB above the daemon's RSS."""
    if run == 0:
        return False
    metadata = library.read_metadata(symbol).metadata
    rows_per_segment = library.options().rows_per_segment
    for number, (first, last) in enumerate(segment_slices(segments.iloc[len(segments) - run :], rows_per_segment)):
        if number:
            release()
        rows = restore_utc(library.read(symbol, date_range=(first, last)).data)
        library.update(symbol, rows, metadata=metadata, prune_previous_versions=False)
    return True


def closed_parts(symbols: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (library, symbol) of day partitions older than their stream's newest partition among ``symbols``, and of
    the whole (pre-partitioning) symbol of a stream that has partitions: never appended to again."""
    symbols = list(symbols)
    newest: dict[tuple[str, str], date] = {}
    for name, symbol in symbols:
        split = split_partition(symbol)
        if split is not None:
            stream = (name, split[0])
            newest[stream] = max(newest.get(stream, split[1]), split[1])
    return {(name, symbol) for name, symbol in symbols if _older_than_newest(name, symbol, newest)}


def _older_than_newest(name: str, symbol: str, newest: dict[tuple[str, str], date]) -> bool:
    split = split_partition(symbol)
    if split is None:
        return is_partitioned(symbol) and (name, symbol) in newest
    return split[1] < newest[(name, split[0])]


def _rebuild_version_map(library: Library, symbol: str) -> None:
    """Rewrite the symbol's version map as its live versions only. A folded map (``_compact_version_map``) still
    holds ~30 B for every version ever written, deleted ones included, and ArcticDB decodes all of it to find the
    latest version: a symbol appended once a minute (a chain, a feature) would make every cold read, version listing
    and maintenance run ~15 ms slower per 20,000 versions (~350,000 a year). ``fix_symbol_trees`` writes a map of the
    live versions plus those snapshots pin (we never delete a pinned one), so it stays the size of what is kept; new
    versions still number after the latest, which pruning never deletes. Like a fold, it writes the new map, points
    the symbol's reference at it, then deletes the old keys (readers retry a reference that moved under them)."""
    library._nvs.version_store.fix_symbol_trees([symbol])


def _live_versions(library: Library, symbol: str) -> list[tuple[int, VersionInfo]]:
    """(version, info) of the symbol's live versions, oldest first (which snapshots pin them: `_snapshot_pins`)."""
    versions = library.list_versions(symbol, skip_snapshots=True)
    return sorted((key.version, info) for key, info in versions.items() if not info.deleted and key.symbol == symbol)


def _snapshot_day(name: str) -> date | None:
    """The UTC day a hydra snapshot name carries (``daily-YYYYMMDD`` or ``<label>-YYYYMMDDTHHMMSS...Z``)."""
    match = _SNAPSHOT_DAY.match(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match[1] or match[2], "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None
