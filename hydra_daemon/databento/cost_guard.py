"""A spending limit for Databento Historical: every request is priced (`metadata.get_cost`) before it is made.

Historical data is billed by the bytes a request returns, so a daemon that fills gaps on its own spends money on
its own. `CostGuard.authorize` asks `metadata.get_cost` and `metadata.get_record_count` for the exact request, logs
the quote, and refuses it (`CostRefused`) when it costs more than `max_historical_cost_usd`, or when it would take
what this store spent today (UTC) above that same limit. What was authorized is added to a small ledger in
`<state_dir>/historical_spend.json` (today's total only: it survives restarts, and does not grow), and counted on
the pipeline's `PipelineStats` for health and metrics. A refused range is appended to
`<state_dir>/gaps/historical_refused.jsonl`, so an operator (or a later run, with a higher limit or tomorrow's
budget) knows exactly what is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import structlog

from hydra_daemon.databento.historical_client import http_errors
from hydra_daemon.errors import UserError
from hydra_daemon.ingest import PipelineStats

log = structlog.get_logger()

SPEND_FILE = "historical_spend.json"
REFUSED_FILE = Path("gaps") / "historical_refused.jsonl"


@dataclass(frozen=True)
class HistoricalRequest:
    """One `timeseries.get_range` request: `symbols` (parent stype, e.g. ``HE.FUT``) of `schema` in [start, end)."""

    dataset: str
    symbols: str
    schema: str
    start_ns: int
    end_ns: int

    def describe(self) -> str:
        return f"{self.symbols} {self.schema} [{_iso(self.start_ns)}, {_iso(self.end_ns)})"


@dataclass(frozen=True)
class Quote:
    """What Databento says `request` will cost (US dollars) and how many records it returns."""

    request: HistoricalRequest
    cost_usd: float
    records: int


class CostRefused(UserError):
    """A Historical request was not made: it costs more than the per-request or per-UTC-day limit allows."""

    def __init__(self, message: str, cost_usd: float) -> None:
        super().__init__(message)
        self.cost_usd = cost_usd


def _iso(ts_ns: int) -> str:
    return pd.Timestamp(ts_ns, tz=UTC).isoformat()


class SpendLedger:
    """Today's (UTC) authorized Historical spend, in a JSON file rewritten atomically; memory only without a path.

    One lock per process guards read-modify-write, so the futures and options pipelines share one budget."""

    _lock = threading.Lock()

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._memory: dict[str, Any] = {}

    def spent_today(self, today: date) -> float:
        with self._lock, self._file_lock():
            return self._spent(self._load(), today)

    def refund(self, today: date, cost_usd: float) -> None:
        """Take back a charge whose request delivered nothing (Databento answered with an error status)."""
        with self._lock, self._file_lock():
            state = self._load()
            if state.get("day") == today.isoformat():
                self._store({"day": today.isoformat(), "spent_usd": max(0.0, self._spent(state, today) - cost_usd)})

    def charge(self, today: date, cost_usd: float, allow: Callable[[float], None]) -> float:
        """Add `cost_usd` to today's total if `allow(spent so far)` does not raise; return the new total. One lock
        around both, so two pipelines filling at once cannot both pass the daily limit."""
        with self._lock, self._file_lock():
            spent = self._spent(self._load(), today)
            allow(spent)
            self._store({"day": today.isoformat(), "spent_usd": spent + cost_usd})
            return spent + cost_usd

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Other processes sharing the state directory (a backfill beside the daemon) wait here."""
        if self.path is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _spent(self, state: Any, today: date) -> float:
        if not isinstance(state, dict):
            raise self._damaged("not a JSON object")
        if state.get("day") != today.isoformat():
            return 0.0
        spent = state.get("spent_usd")
        if isinstance(spent, bool) or not isinstance(spent, int | float) or not math.isfinite(spent) or spent < 0:
            raise self._damaged(f"spent_usd is {spent!r}")
        return float(spent)

    def _damaged(self, why: str) -> CostRefused:
        return CostRefused(
            f"today's Historical spend in {self.path} cannot be read ({why}); no Historical request is made until "
            "it is fixed or removed (check Databento's usage page for what was spent today)",
            0.0,
        )

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            return self._memory
        try:
            loaded: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (ValueError, OSError) as exc:  # fail closed: an unknown spend must not reopen the day's budget
            raise self._damaged(f"{type(exc).__name__}: {exc}") from None
        return loaded

    def _store(self, state: dict[str, Any]) -> None:
        if self.path is None:
            self._memory = state
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(state))
                handle.flush()
                os.fsync(handle.fileno())  # a crash must not forget money already spent
            os.replace(staging, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)  # a full disk: no staging file per retry
            raise


class CostGuard:
    """Prices, limits and accounts every Historical request (see the module docstring)."""

    def __init__(self, max_cost_usd: float, state_dir: Path | None = None, stats: PipelineStats | None = None) -> None:
        self.max_cost_usd = max_cost_usd
        self.ledger = SpendLedger(state_dir / SPEND_FILE if state_dir is not None else None)
        self.refused_path = state_dir / REFUSED_FILE if state_dir is not None else None
        self.stats = stats if stats is not None else PipelineStats()

    def quote(self, client: Any, request: HistoricalRequest) -> Quote:
        """Ask Databento what `request` costs and how many records it returns (both calls are free)."""
        fields = {
            "dataset": request.dataset,
            "start": request.start_ns,
            "end": request.end_ns,
            "symbols": [request.symbols],
            "schema": request.schema,
            "stype_in": "parent",
        }
        with http_errors():
            cost = float(client.metadata.get_cost(**fields))
            records = int(client.metadata.get_record_count(**fields))
        quote = Quote(request, cost, records)
        log.info(
            "historical_cost_quoted",
            request=request.describe(),
            cost_usd=cost,
            records=records,
            max_cost_usd=self.max_cost_usd,
        )
        return quote

    def check(self, quote: Quote, today: date | None = None) -> None:
        """Raise `CostRefused` if `quote` breaks the per-request limit or today's budget."""
        day = today or datetime.now(UTC).date()
        self._check(quote, self.ledger.spent_today(day), day)

    def _check(self, quote: Quote, spent: float, day: date) -> None:
        limit = self.max_cost_usd
        what = quote.request.describe()
        if quote.cost_usd > limit:
            raise CostRefused(
                f"Historical request {what} would cost ${quote.cost_usd:,.4f}, above the per-request limit "
                f"[databento] max_historical_cost_usd = ${limit:,.4f}",
                quote.cost_usd,
            )
        if spent + quote.cost_usd > limit:
            raise CostRefused(
                f"Historical request {what} would cost ${quote.cost_usd:,.4f} after ${spent:,.4f} spent today "
                f"({day} UTC), above the daily limit [databento] max_historical_cost_usd = ${limit:,.4f}",
                quote.cost_usd,
            )

    def check_total(self, quotes: list[Quote], today: date | None = None) -> None:
        """Raise `CostRefused` unless every quote passes the per-request limit and all of them fit today's budget
        together (for a backfill, checked before its first download)."""
        for quote in quotes:
            self.check(quote, today)
        if not quotes:
            return
        total = sum(q.cost_usd for q in quotes)
        day = today or datetime.now(UTC).date()
        spent = self.ledger.spent_today(day)
        if spent + total > self.max_cost_usd:
            raise CostRefused(
                f"these {len(quotes)} Historical requests would cost ${total:,.4f} together after ${spent:,.4f} "
                f"spent today ({day} UTC), above the daily limit [databento] max_historical_cost_usd = "
                f"${self.max_cost_usd:,.4f}; raise it or shorten the range",
                total,
            )

    def authorize(self, client: Any, request: HistoricalRequest) -> Quote:
        """Quote `request`, check it, and account it as spent; `CostRefused` (counted on the stats) otherwise."""
        quote = self.quote(client, request)
        day = datetime.now(UTC).date()
        try:
            today_total = self.ledger.charge(day, quote.cost_usd, lambda spent: self._check(quote, spent, day))
        except CostRefused as refused:
            self.stats.historical_refusals += 1
            self.stats.degraded_reason = str(refused)
            log.warning("historical_request_refused", reason=str(refused), cost_usd=quote.cost_usd)
            raise
        self.stats.historical_cost_usd += quote.cost_usd
        log.info("historical_cost_spent", cost_usd=quote.cost_usd, spent_today_usd=round(today_total, 6))
        return quote

    def refund(self, quote: Quote, day: date) -> None:
        """Take back `quote`'s charge of `day`: its request was answered with an error status (no data delivered,
        nothing billed), so an outage does not use up the day's budget."""
        self.ledger.refund(day, quote.cost_usd)
        self.stats.historical_cost_usd -= quote.cost_usd
        log.info("historical_cost_refunded", cost_usd=quote.cost_usd)

    def record_gap(self, request: HistoricalRequest, reason: str) -> None:
        """Append a range left unfilled to the refused-gaps file (when there is a state directory)."""
        log.warning("historical_gap_left", gap=request.describe(), path=str(self.refused_path), reason=reason)
        if self.refused_path is None:
            return
        entry = {
            "recorded_at": datetime.now(UTC).isoformat(),
            **asdict(request),
            "start": _iso(request.start_ns),
            "end": _iso(request.end_ns),
            "reason": reason,
        }
        self.refused_path.parent.mkdir(parents=True, exist_ok=True)
        with self.refused_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
