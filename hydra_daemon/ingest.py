"""The `IngestPipeline` contract every pipeline follows: fetch → validate → persist, with health counters."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import structlog

from hydra_daemon.latency import LatencyHistogram

Batch = TypeVar("Batch")


@dataclass(frozen=True)
class Problem:
    """One rejected or flagged input: what is wrong and where (instrument and time, or code and date)."""

    what: str
    where: str


@dataclass
class PipelineStats:
    """Counters a pipeline keeps for the health endpoint and metrics; every time is UTC-aware.

    `reconnects` count attempts, never progress. `gap_fill_records`: rows received from Historical gap fills.
    `historical_cost_usd` / `historical_refusals`: what the cost guard let Historical requests spend and how many it
    refused; `degraded_reason` says why a running pipeline is degraded (e.g. a refused request; None when fine).
    `buffered_rows` / `queue_depth`: rows waiting in the writer and decoded batches waiting for the committer.
    `persist_seconds` times each `persist()`; `append_seconds` is the writer's append latency when it shares one.
    """

    records: int = 0
    batches: int = 0
    rejects: int = 0
    reconnects: int = 0
    gaps_filled: int = 0
    state: str = "starting"
    last_record_time: datetime | None = None
    last_commit_at: datetime | None = None
    last_error: str | None = None
    gap_fill_records: int = 0
    historical_cost_usd: float = 0.0
    historical_refusals: int = 0
    degraded_reason: str | None = None
    buffered_rows: int = 0
    queue_depth: int = 0
    persist_seconds: LatencyHistogram = field(default_factory=LatencyHistogram)
    append_seconds: LatencyHistogram | None = None
    started_monotonic: float = field(default_factory=time.monotonic)

    def lag_s(self, now: datetime | None = None) -> float | None:
        """Seconds between now and the newest stored record's event time."""
        if self.last_record_time is None:
            return None
        return ((now or datetime.now(UTC)) - self.last_record_time).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe view for the health answer."""
        lag = self.lag_s()
        return {
            "state": self.state,
            "records": self.records,
            "batches": self.batches,
            "rejects": self.rejects,
            "reconnects": self.reconnects,
            "gaps_filled": self.gaps_filled,
            "gap_fill_records": self.gap_fill_records,
            "historical_cost_usd": round(self.historical_cost_usd, 6),
            "historical_refusals": self.historical_refusals,
            "degraded_reason": self.degraded_reason,
            "buffered_rows": self.buffered_rows,
            "queue_depth": self.queue_depth,
            "last_record_time": _iso(self.last_record_time),
            "last_commit_at": _iso(self.last_commit_at),
            "lag_s": None if lag is None else round(lag, 3),
            "last_error": self.last_error,
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class IngestPipeline(ABC, Generic[Batch]):
    """fetch() yields raw batches; validate() splits clean rows from problems; persist() commits the clean rows.

    `run()` drives the three with structlog context bound (pipeline, market, schema) and keeps `stats`.
    Subclasses own reconnection inside `fetch()` and bump `stats.reconnects` / `stats.gaps_filled` there.
    """

    name: str = "pipeline"

    def __init__(self, *, markets: tuple[str, ...], schema: str) -> None:
        self.markets = markets
        self.schema = schema
        self.stats = PipelineStats()

    @abstractmethod
    def fetch(self) -> AsyncIterator[Batch]:
        """Yield raw batches from the source, forever (or until the source is exhausted)."""

    @abstractmethod
    def validate(self, batch: Batch) -> tuple[Batch, list[Problem]]:
        """Return the clean part of `batch` and the problems found in the rest."""

    @abstractmethod
    async def persist(self, clean: Batch) -> int:
        """Commit the clean batch; return the number of rows stored (after de-duplication)."""

    async def run(self) -> None:
        """Fetch, validate and persist until the source ends; problems are logged and counted, never stored."""
        log = structlog.get_logger().bind(pipeline=self.name, market=",".join(self.markets), schema=self.schema)
        self.stats.state = "running"
        log.info("pipeline_started")
        async for batch in self.fetch():
            clean, problems = self.validate(batch)
            for problem in problems:
                log.warning("record_rejected", what=problem.what, where=problem.where)
            self.stats.rejects += len(problems)
            began = time.perf_counter()
            stored = await self.persist(clean)
            self.stats.persist_seconds.observe(time.perf_counter() - began)
            self.stats.batches += 1
            self.stats.records += stored
            if stored:
                self.stats.last_commit_at = datetime.now(UTC)
        self.stats.state = "finished"
        log.info("pipeline_finished", records=self.stats.records, rejects=self.stats.rejects)
