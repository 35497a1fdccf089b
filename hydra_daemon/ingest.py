"""The `IngestPipeline` contract every pipeline follows: fetch → validate → persist, with health counters and the
states every pipeline reports."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd
import structlog

from hydra_daemon.latency import LatencyHistogram

Batch = TypeVar("Batch")


class PipelineState(StrEnum):
    """What a pipeline is doing now (`PipelineStats.state`; the health answer shows the value)."""

    STARTING = "starting"
    RUNNING = "running"  # run() started; the source has not said more yet
    FINISHED = "finished"
    FAILED = "failed"
    CONNECTING = "connecting"  # live streams: asking the store for resume points, connecting
    FILLING = "filling"  # live streams: filling a gap from Historical
    STREAMING = "streaming"  # live streams: the session is up and delivering
    RECONNECTING = "reconnecting"  # live streams: backing off after a session ended
    AUTH_REFUSED = "auth_refused"  # live streams: the key was refused; retrying rarely (health: failed)
    POLLING = "polling"  # COT: downloading the report files
    WAITING_FOR_RELEASE = "waiting_for_release"  # COT: the expected report is not published yet
    IDLE = "idle"  # COT: sleeping until the next scheduled release

    @property
    def source_up(self) -> bool:
        """True when the source is really up even before the first batch (the supervisor's "started")."""
        return self is PipelineState.STREAMING

    @property
    def waits_by_design(self) -> bool:
        """True in the states where no work counter moves, yet nothing is wedged (backoff, an authentication hold,
        COT's wait for the next release)."""
        return self in _WAITING


_WAITING = frozenset(
    {
        PipelineState.RECONNECTING,
        PipelineState.AUTH_REFUSED,
        PipelineState.IDLE,
        PipelineState.WAITING_FOR_RELEASE,
        PipelineState.FINISHED,
        PipelineState.FAILED,
    }
)


class Idle(Enum):
    """What `fetch()` yields when the source is alive but quiet: not a batch, a chance to flush on time."""

    TICK = "idle"


@dataclass(frozen=True)
class Problem:
    """One rejected or flagged input: what is wrong and where (instrument and time, or code and date)."""

    what: str
    where: str


@dataclass
class MarketProgress:
    """How one market of a multi-market pipeline delivers: its newest record's time, overall and per schema. A replay
    of what was already seen does not advance it, so one market's silence shows while another's data flows, and a
    slow schema's (daily bars) while a fast one's flows (health judges each market, and each schema by its cadence)."""

    last_record_time: datetime | None = None
    schemas: dict[str, datetime] = field(default_factory=dict)

    def advance(self, times: pd.DatetimeIndex, schema: str) -> None:
        """Take the newest of `times` (UTC) of `schema` if it is newer than the newest so far: one vectorised pass
        per frame."""
        if not len(times):
            return
        newest = pd.Timestamp(int(np.max(times.asi8)), tz="UTC")  # a datetime keeping its ns
        if schema not in self.schemas or newest > self.schemas[schema]:
            self.schemas[schema] = newest
        if self.last_record_time is None or newest > self.last_record_time:
            self.last_record_time = newest


@dataclass
class PipelineStats:
    """Counters a pipeline keeps for the health endpoint and metrics; every time is UTC-aware.

    `reconnects` count attempts, never progress; `fetch_failures` count failed downloads of a polled source (COT).
    `idle_ticks` count `Idle` ticks (a live source quiet but alive); they are not batches.
    `gap_fill_records`: rows received from Historical gap fills. `corrupt_records`: source records that could not be
    decoded (quarantined, never stored; a live session is replaced at once).
    `historical_cost_usd` / `historical_refusals`: what the cost guard let Historical requests spend and how many it
    refused; `degraded_reason` says why a running pipeline is degraded (e.g. a refused request; None when fine).
    `buffered_rows` / `queue_depth`: rows waiting in the writer and decoded batches waiting to be persisted.
    `persist_seconds` times each `persist()`; `append_seconds` is the writer's append latency when it shares one.
    `markets`: per market, what it delivered (`MarketProgress`; live market-data pipelines keep it, one entry a
    market, for health to judge each market by its own hours).
    """

    records: int = 0
    batches: int = 0
    rejects: int = 0
    reconnects: int = 0
    gaps_filled: int = 0
    fetch_failures: int = 0
    idle_ticks: int = 0
    state: PipelineState = PipelineState.STARTING
    last_record_time: datetime | None = None
    last_commit_at: datetime | None = None
    last_error: str | None = None
    gap_fill_records: int = 0
    corrupt_records: int = 0
    historical_cost_usd: float = 0.0
    historical_refusals: int = 0
    degraded_reason: str | None = None
    buffered_rows: int = 0
    queue_depth: int = 0
    persist_seconds: LatencyHistogram = field(default_factory=LatencyHistogram)
    append_seconds: LatencyHistogram | None = None
    started_monotonic: float = field(default_factory=time.monotonic)
    markets: dict[str, MarketProgress] = field(default_factory=dict)

    def market(self, name: str) -> MarketProgress:
        """The progress of market `name` (created on its first records)."""
        return self.markets.setdefault(name, MarketProgress())

    def lag_s(self, now: datetime | None = None) -> float | None:
        """Seconds between now and the newest stored record's event time."""
        if self.last_record_time is None:
            return None
        return ((now or datetime.now(UTC)) - self.last_record_time).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe view for the health answer."""
        lag = self.lag_s()
        return {
            "state": self.state.value,
            "records": self.records,
            "batches": self.batches,
            "rejects": self.rejects,
            "reconnects": self.reconnects,
            "gaps_filled": self.gaps_filled,
            "fetch_failures": self.fetch_failures,
            "gap_fill_records": self.gap_fill_records,
            "corrupt_records": self.corrupt_records,
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
    Subclasses own reconnection inside `fetch()` and bump `stats.reconnects` / `stats.gaps_filled` there. A live
    source yields `Idle.TICK` while quiet; `run()` then calls `on_idle()` instead of counting a batch.
    """

    name: str = "pipeline"

    def __init__(self, *, markets: tuple[str, ...], schema: str) -> None:
        self.markets = markets
        self.schema = schema
        self.stats = PipelineStats()

    @abstractmethod
    def fetch(self) -> AsyncGenerator[Batch | Idle, None]:
        """Yield raw batches from the source, forever (or until the source is exhausted); `Idle.TICK` while quiet."""

    @abstractmethod
    def validate(self, batch: Batch) -> tuple[Batch, list[Problem]]:
        """Return the clean part of `batch` and the problems found in the rest."""

    @abstractmethod
    async def persist(self, clean: Batch) -> int:
        """Commit the clean batch; return the number of rows stored (after de-duplication)."""

    async def on_idle(self) -> None:
        """The source is quiet: flush what is due. Pipelines whose source never idles need nothing here."""

    async def run(self) -> None:
        """Fetch, validate and persist until the source ends; problems are logged and counted, never stored."""
        log = structlog.get_logger().bind(pipeline=self.name, market=",".join(self.markets), schema=self.schema)
        self.stats.state = PipelineState.RUNNING
        log.info("pipeline_started")
        # aclosing: a stop that lands while a batch is being persisted must still run fetch()'s cleanup (commit what
        # is buffered) now, not whenever the suspended generator is garbage-collected — after the store has closed.
        async with aclosing(self.fetch()) as batches:
            async for batch in batches:
                if isinstance(batch, Idle):
                    self.stats.idle_ticks += 1
                    await self.on_idle()
                    continue
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
        self.stats.state = PipelineState.FINISHED
        log.info("pipeline_finished", records=self.stats.records, rejects=self.stats.rejects)
