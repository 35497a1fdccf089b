"""Blocking store work for COT rows (call from a worker thread): the bitemporal COT table, features, quarantine.

One `HE.cot` symbol per market in the `cot` library, keyed on `as_of`, holding `code` and the 48 position columns
(All/Old/Other) plus `as_of`, `available_at`, `revision`, `ingested_at`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import structlog

from hydra_daemon.cot.calendar import release_time
from hydra_daemon.cot.features import HISTORY_COLUMNS, cot_features
from hydra_daemon.cot.parse import POSITION_COLUMNS
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.symbols import COT, cot_symbol

COT_KEYS: tuple[str, ...] = ("as_of",)
COT_VALUE_COLUMNS: tuple[str, ...] = ("code", *POSITION_COLUMNS)

log = structlog.get_logger()


def cot_table(store: Store, market: str) -> BitemporalTable:
    """The bitemporal COT table of `market` (symbol `cot_symbol(market)` in the `cot` library)."""
    if store.writer:  # the lease still held (S3: not taken over), and no LMDB write after a failed commit
        store.require_writable()
    symbol = cot_symbol(market)
    return BitemporalTable(store.library(COT), symbol, COT_KEYS, lock=store.symbol_lock(COT, symbol))


def scheduled_release(as_of: pd.Series, extra_closures: Collection[date]) -> pd.Series:
    """Per row, the calendar release time of its `as_of` (UTC)."""
    cache: dict[date, datetime] = {}
    days = [ts.date() for ts in as_of]
    for day in set(days):
        cache[day] = release_time(day, extra_closures)
    return pd.Series(pd.to_datetime([cache[d] for d in days], utc=True), index=as_of.index, name="available_at")


@dataclass(frozen=True)
class Unpublished:
    """What a poll saw: at `seen_at`, the files held no week newer than `newest` (None: none at all) although a
    newer one was due by the calendar."""

    newest: date | None
    seen_at: datetime


def record_cycle(
    table: BitemporalTable,
    rows: pd.DataFrame,
    *,
    revealed_at: datetime,
    ingested_at: datetime,
    revision_weeks: int,
    extra_closures: Collection[date],
    unpublished: Collection[Unpublished] = (),
    withheld: Mapping[pd.Timestamp, datetime] | None = None,
) -> pd.DataFrame:
    """Record a live cycle's rows of one market: a new `as_of` gets its scheduled release time; a known `as_of`
    among the newest `revision_weeks` whose values changed becomes a revision available at `revealed_at` (when the
    cycle that revealed it could see it; see `pipeline.revealed_at_for`); older known weeks and unchanged rows are
    skipped.

    A new `as_of` is public only since `revealed_at` (claiming its scheduled time would be lookahead) when an
    earlier look found it missing after its scheduled release: older than a stored week (late, or quarantined at
    its release and corrected since); newer than what a poll or an earlier cycle of this market saw at a time past
    its scheduled release (`unpublished`: a release the calendar does not know was late, e.g. a government
    shutdown, or this market's row was bad or absent); or quarantined (`withheld`: as_of -> when its row was first
    seen breaking the identities) at or after its scheduled release."""
    known = set(table.latest()["as_of"])
    recent = set(sorted(rows["as_of"].unique())[-revision_weeks:])
    rows = rows[~rows["as_of"].isin(known) | rows["as_of"].isin(recent)]
    scheduled = scheduled_release(rows["as_of"], extra_closures)
    revealed = pd.Series(pd.Timestamp(revealed_at).tz_convert("UTC"), index=rows.index)
    late = rows["as_of"] < max(known) if known else pd.Series(False, index=rows.index)
    late = late | _seen_missing(rows["as_of"], scheduled, unpublished, withheld)
    available_at = revealed.where(rows["as_of"].isin(known) | late, scheduled)
    return table.record(
        rows, value_columns=COT_VALUE_COLUMNS, available_at=available_at, ingested_at=pd.Timestamp(ingested_at)
    )


def _seen_missing(
    as_of: pd.Series,
    scheduled: pd.Series,
    unpublished: Collection[Unpublished],
    withheld: Mapping[pd.Timestamp, datetime] | None,
) -> pd.Series:
    """Per row, whether an earlier look found its week missing at or after its scheduled release: newer than what a
    look saw then (`unpublished`), or quarantined then (`withheld`)."""
    missing = pd.Series(False, index=as_of.index)
    for seen in unpublished:
        after = as_of > pd.Timestamp(seen.newest, tz="UTC") if seen.newest is not None else True
        missing = missing | (after & (scheduled <= pd.Timestamp(seen.seen_at).tz_convert("UTC")))
    if withheld:
        missing = missing | (scheduled <= pd.to_datetime(as_of.map(withheld), utc=True))
    return missing


def record_backfill(
    table: BitemporalTable,
    rows: pd.DataFrame,
    *,
    ingested_at: datetime,
    extra_closures: Collection[date],
    unpublished: Collection[Unpublished] = (),
    withheld: Mapping[pd.Timestamp, datetime] | None = None,
) -> pd.DataFrame:
    """Record rows whose `as_of` is not stored yet as revision 0 at their scheduled release time; stored weeks are
    left alone (a yearly file cannot say when a difference was published, so it must not become a revision). A
    week an earlier look found missing after its release (`unpublished`, `withheld`: as in `record_cycle`) is public
    only from `ingested_at`: when it was corrected is unknown, and its release would date the correction back."""
    known = set(table.latest()["as_of"])
    fresh = rows[~rows["as_of"].isin(known)]
    if fresh.empty:
        return fresh
    scheduled = scheduled_release(fresh["as_of"], extra_closures)
    late = _seen_missing(fresh["as_of"], scheduled, unpublished, withheld)
    return table.record(
        fresh,
        value_columns=COT_VALUE_COLUMNS,
        available_at=scheduled.where(~late, pd.Timestamp(ingested_at).tz_convert("UTC")),
        ingested_at=pd.Timestamp(ingested_at),
    )


def write_features(store: Store, market: str, history: pd.DataFrame, *, ingested_at: datetime) -> int:
    """Recompute the point-in-time COT features of `market` from its full history; the feature store writes only
    values that are new or changed. Returns the number of feature rows written."""
    if history.empty:
        return 0
    features = FeatureStore(store)
    stamp = pd.Timestamp(ingested_at)
    return sum(
        features.write_feature(market, name, frame, ingested_at=stamp)
        for name, frame in cot_features(history[list(HISTORY_COLUMNS)]).items()
        if not frame.empty
    )


def seen_path(state_dir: Path) -> Path:
    """Where the COT pipeline keeps what its looks found missing: `<state_dir>/cot_seen.json`."""
    return state_dir / "cot_seen.json"


ANY_MARKET = "*"
"""`SeenLog` key of a poll's look at the whole file (every market)."""


class SeenLog:
    """The latest `Unpublished` observation per market (`ANY_MARKET`: a poll of the whole file), kept in a JSON
    file: a restart, or the supervisor rebuilding the pipeline, must not forget that a week was missing after its
    release (it would then be dated back to that release). A later observation replaces an earlier one: its
    `newest` is no older, and its `seen_at` later."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: dict[str, Unpublished] | None = None

    def get(self, market: str) -> Unpublished | None:
        with self._lock:
            return self._load().get(market)

    def put(self, market: str, seen: Unpublished) -> None:
        """Record `seen` for `market` and write the file (replaced atomically)."""
        with self._lock:
            observations = self._load()
            observations[market] = seen
            encoded = {
                key: {"newest": None if o.newest is None else o.newest.isoformat(), "seen_at": o.seen_at.isoformat()}
                for key, o in observations.items()
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(self.path.name + ".tmp")
            partial.write_text(json.dumps(encoded, sort_keys=True), encoding="utf-8")
            partial.replace(self.path)

    def _load(self) -> dict[str, Unpublished]:
        if self._seen is None:
            self._seen = self._read()
        return self._seen

    def _read(self) -> dict[str, Unpublished]:
        if not self.path.exists():
            return {}
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
            return {
                str(key): Unpublished(
                    None if value["newest"] is None else date.fromisoformat(value["newest"]),
                    datetime.fromisoformat(value["seen_at"]),
                )
                for key, value in stored.items()
            }
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            log.warning("cot_seen_unreadable", path=str(self.path), error=str(error), hint="starting without it")
            return {}


def quarantine_path(state_dir: Path) -> Path:
    """Where rows failing validation are kept: `<state_dir>/quarantine/cot.jsonl`."""
    return state_dir / "quarantine" / "cot.jsonl"


class QuarantineLog:
    """Append-only JSON-lines file of rows that failed validation; each (code, as_of, reason) is written once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str, str]] | None = None
        self._unreadable: set[int] = set()

    def add(self, quarantined: pd.DataFrame, *, source: str, ingested_at: datetime) -> int:
        """Append the rows not already in the file; return how many were appended."""
        with self._lock:
            seen = self._load()
            lines, keys = [], set()
            for record in quarantined.to_dict("records"):
                as_of = pd.Timestamp(record["as_of"]).strftime("%Y-%m-%d")
                key = (str(record["code"]), as_of, str(record["reason"]))
                if key in seen or key in keys:
                    continue
                keys.add(key)
                values = {c: _json_number(record.get(c)) for c in POSITION_COLUMNS}
                lines.append(
                    json.dumps(
                        {
                            "code": key[0],
                            "as_of": as_of,
                            "reason": key[2],
                            "source": source,
                            "ingested_at": ingested_at.isoformat(),
                            "values": values,
                        }
                    )
                )
            if lines:
                _append_whole(self.path, "\n".join(lines) + "\n")
                seen |= keys
                log.warning("cot_quarantined", path=str(self.path), rows=len(lines))
            return len(lines)

    def first_seen(self, code: str) -> dict[pd.Timestamp, datetime]:
        """Per `as_of` of `code`, when a row of it was first quarantined: its clean values were not public then."""
        seen: dict[pd.Timestamp, datetime] = {}
        for entry in self.entries():
            if entry["code"] == code:
                as_of = pd.Timestamp(str(entry["as_of"]), tz="UTC")
                at = datetime.fromisoformat(str(entry["ingested_at"]))
                seen[as_of] = min(seen.get(as_of, at), at)
        return seen

    def entries(self) -> list[dict[str, object]]:
        """Every quarantined row recorded so far; a line that does not parse (torn by a crash or a full disk under
        an earlier version, or edited by hand) is skipped with one warning per process."""
        if not self.path.exists():
            return []
        entries = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            try:
                entry = json.loads(line) if line else None
            except ValueError:
                entry = None
                if number not in self._unreadable:
                    self._unreadable.add(number)
                    log.warning("cot_quarantine_line_unreadable", path=str(self.path), line=number)
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def _load(self) -> set[tuple[str, str, str]]:
        if self._seen is None:
            self._seen = {(str(e["code"]), str(e["as_of"]), str(e["reason"])) for e in self.entries()}
        return self._seen


def _append_whole(path: Path, text: str) -> None:
    """Append `text` whole or not at all: a write the disk cuts short is truncated away, so no torn line is left for
    every later read to trip on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        data = memoryview(text.encode("utf-8"))
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def _json_number(value: object) -> int | float | None:
    """JSON value of a position: integers stay exact (a float would round values above 2**53)."""
    if value is None or pd.isna(value):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    return float(value)  # type: ignore[arg-type]
