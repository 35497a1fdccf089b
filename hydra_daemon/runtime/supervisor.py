"""Supervision: one restarting task per pipeline, periodic jobs, and the progress signal the watchdog trusts.

Each pipeline is built by its factory (so a restart rebuilds state from the store's watermarks) and run until it
fails or returns; then it is rebuilt after an exponential, jittered backoff that resets once a run stayed healthy
for `RestartPolicy.healthy_after_s`. A failing pipeline never takes the others down. Cancellation (shutdown)
propagates into every pipeline, which flushes in its own `finally`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import anyio
import structlog

from hydra_daemon.backoff import Backoff
from hydra_daemon.errors import UserError
from hydra_daemon.ingest import IngestPipeline, PipelineState
from hydra_daemon.redaction import redact_text

PipelineFactory = Callable[[], IngestPipeline[Any]]
"""Builds a fresh pipeline for each (re)start. Runs on the event loop, so it must be cheap: the pipeline reads
its resume point (the store's watermarks) in `run()`, in a worker thread."""

_ERROR_CHARS = 500


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff with ±`jitter` (fraction) between restarts, capped at `max_s`; a run that stayed up for
    `healthy_after_s` resets it."""

    initial_s: float = 1.0
    max_s: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.2
    healthy_after_s: float = 120.0

    def backoff(self, rng: random.Random) -> Backoff:
        """The restart delays of one pipeline (attempt 0 = the first restart since the last healthy run)."""
        return Backoff(
            self.initial_s, self.max_s, self.multiplier, (1.0 - self.jitter, 1.0 + self.jitter), floor_s=0.0, rng=rng
        )


class SupervisorState(StrEnum):
    """Where a supervised pipeline is in its restart cycle (the health answer's ``supervisor_state``)."""

    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPED = "stopped"


@dataclass
class PipelineRecord:
    """What the supervisor knows about one pipeline; `current` is the live (or last failed) instance."""

    name: str
    factory: PipelineFactory
    state: SupervisorState = SupervisorState.STARTING
    restarts: int = 0
    crashes_in_row: int = 0
    run_started: float = field(default_factory=time.monotonic)
    last_failure: str | None = None
    last_failure_at: datetime | None = None
    retry_at: float | None = None
    current: IngestPipeline[Any] | None = None
    last_progress: float = field(default_factory=time.monotonic)
    last_waiting: float = 0.0
    """When a sample last found the instance waiting by design (`PipelineState.waits_by_design`)."""
    _marker: tuple[Any, ...] = ()

    def started(self) -> bool:
        """True once the running instance persisted a batch or reports a started state."""
        pipeline = self.current
        if self.state != SupervisorState.RUNNING or pipeline is None:
            return False
        return pipeline.stats.batches > 0 or pipeline.stats.state.source_up

    def sample(self, now: float) -> bool:
        """Record progress if the instance's work counters moved since the last sample (a new instance counts once).

        Reconnect attempts, state changes and errors are not progress: a pipeline retrying forever makes none. An
        idle tick is: the session is up and the pipeline turns, the source is only quiet."""
        stats = self.current.stats if self.current is not None else None
        work = (
            ()
            if stats is None
            else (stats.records, stats.batches, stats.rejects, stats.gap_fill_records, stats.idle_ticks)
        )
        if stats is not None and stats.state.waits_by_design:
            self.last_waiting = now
        marker = (id(self.current), *work)
        if marker == self._marker:
            return False
        self._marker = marker
        self.last_progress = now
        return True

    def as_dict(self, now: float) -> dict[str, Any]:
        """JSON-safe view: the instance's `PipelineStats` plus restart bookkeeping."""
        stats = self.current.stats.as_dict() if self.current is not None else {"state": self.state.value}
        retry_in = None if self.retry_at is None else round(max(0.0, self.retry_at - now), 3)
        return {
            **stats,
            "supervisor_state": self.state.value,
            "started": self.started(),
            "restarts": self.restarts,
            "crashes_in_row": self.crashes_in_row,
            "last_failure": self.last_failure,
            "last_failure_at": None if self.last_failure_at is None else self.last_failure_at.isoformat(),
            "retry_in_s": retry_in,
            "progress_age_s": round(now - self.last_progress, 3),
        }


@dataclass(frozen=True)
class PeriodicJob:
    """A coroutine run every `interval_s` (flush, compaction, snapshot…); it returns how many things it committed.

    A positive return counts as daemon progress for the watchdog. Failures are logged and counted, never fatal.
    """

    name: str
    interval_s: float
    run: Callable[[], Awaitable[int]]


@dataclass
class JobRecord:
    """Run and failure counts of one periodic job."""

    job: PeriodicJob
    runs: int = 0
    failures: int = 0
    last_ok: bool | None = None
    last_error: str | None = None
    last_run_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe view for the health answer."""
        return {
            "interval_s": self.job.interval_s,
            "runs": self.runs,
            "failures": self.failures,
            "last_ok": self.last_ok,
            "last_error": self.last_error,
            "last_run_at": None if self.last_run_at is None else self.last_run_at.isoformat(),
        }


class FatalError(RuntimeError):
    """A pipeline or job raised one of the supervisor's fatal exception types: the daemon must stop (exit 1)."""


def describe_error(exc: BaseException) -> str:
    """`Type: message`, secrets masked, cut to a readable length."""
    text = redact_text(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"


class Supervisor:
    """Runs every pipeline (restarting it on failure) and every periodic job inside one task group.

    An exception of a `fatal` type (e.g. the app's `RestartRequired`: only a fresh process helps) is not retried:
    `run()` raises `FatalError` (inside an ExceptionGroup) after cancelling everything else.
    """

    def __init__(
        self,
        pipelines: Sequence[tuple[str, PipelineFactory]],
        *,
        policy: RestartPolicy | None = None,
        jobs: Sequence[PeriodicJob] = (),
        fatal: tuple[type[Exception], ...] = (),
        rng: random.Random | None = None,
    ) -> None:
        names = [name for name, _ in pipelines]
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline names must be unique, got {names}")
        self.policy = policy or RestartPolicy()
        self.records = {name: PipelineRecord(name, factory) for name, factory in pipelines}
        self.jobs = {job.name: JobRecord(job) for job in jobs}
        self.fatal = fatal
        self._rng = rng or random.Random()
        self._external_progress = time.monotonic()

    async def run(self) -> None:
        """Supervise until cancelled; never returns on its own."""
        async with anyio.create_task_group() as group:
            for record in self.records.values():
                group.start_soon(self._supervise, record, name=f"pipeline:{record.name}")
            for job in self.jobs.values():
                group.start_soon(self._repeat, job, name=f"job:{job.job.name}")

    def all_started(self) -> bool:
        """True when every pipeline's source is really up."""
        return all(record.started() for record in self.records.values())

    def mark_progress(self) -> None:
        """Note progress made outside the pipelines' counters (e.g. a storage commit)."""
        self._external_progress = time.monotonic()

    def sample_progress(self) -> None:
        """Compare each pipeline's counters with the last sample; call periodically."""
        now = time.monotonic()
        for record in self.records.values():
            record.sample(now)
            if record.state == SupervisorState.RUNNING and now - record.run_started >= self.policy.healthy_after_s:
                record.crashes_in_row = 0

    def progress_age_s(self) -> float:
        """Seconds since anything made progress (any pipeline's counters moved, or `mark_progress`)."""
        latest = max([self._external_progress, *(r.last_progress for r in self.records.values())])
        return time.monotonic() - latest

    def summary(self) -> str:
        """One line for systemd's STATUS=: each pipeline's state and record count."""
        parts = []
        for record in self.records.values():
            stats = record.current.stats if record.current is not None else None
            state = stats.state if stats is not None and record.state == SupervisorState.RUNNING else record.state
            detail = f"{record.name}: {state}"
            if stats is not None:
                detail += f" {stats.records} rec"
            if record.restarts:
                detail += f" ({record.restarts} restarts)"
            parts.append(detail)
        return "; ".join(parts)

    async def _supervise(self, record: PipelineRecord) -> None:
        # every line logged from this pipeline's task (its stream, its worker threads) names the pipeline
        structlog.contextvars.bind_contextvars(pipeline=record.name)
        log = structlog.get_logger().bind(pipeline=record.name)
        backoff = self.policy.backoff(self._rng)
        try:
            while True:
                started = time.monotonic()
                outcome = await self._run_once(record)
                if time.monotonic() - started >= self.policy.healthy_after_s:
                    backoff.reset()
                delay = backoff.next_delay()
                record.crashes_in_row = backoff.attempt
                record.restarts += 1
                record.state = SupervisorState.BACKOFF
                record.retry_at = time.monotonic() + delay
                log.warning(
                    "pipeline_restarting",
                    reason=outcome,
                    restarts=record.restarts,
                    retry_in_s=round(delay, 3),
                    ran_for_s=round(time.monotonic() - started, 3),
                )
                await anyio.sleep(delay)
                record.retry_at = None
        finally:
            record.state = SupervisorState.STOPPED
            record.retry_at = None

    async def _run_once(self, record: PipelineRecord) -> str:
        """Build and run one instance; return why it ended ('returned' or the error). Cancellation propagates."""
        record.state = SupervisorState.STARTING
        try:
            record.current = record.factory()
            record.state = SupervisorState.RUNNING
            record.run_started = time.monotonic()
            await record.current.run()
        except Exception as exc:
            message = describe_error(exc)
            self._raise_if_fatal(exc, f"pipeline {record.name}")
            record.last_failure = message
            record.last_failure_at = datetime.now(UTC)
            if record.current is not None:
                record.current.stats.state = PipelineState.FAILED
                record.current.stats.last_error = message
            structlog.get_logger().warning(
                "pipeline_failed",
                pipeline=record.name,
                error_type=type(exc).__name__,
                error=message,
                exc_info=_traceback_of(exc),
            )
            return message
        record.last_failure = "returned unexpectedly"
        record.last_failure_at = datetime.now(UTC)
        return "returned"

    async def _repeat(self, job: JobRecord) -> None:
        log = structlog.get_logger().bind(job=job.job.name)
        while True:
            await anyio.sleep(job.job.interval_s)
            job.last_run_at = datetime.now(UTC)
            job.runs += 1
            try:
                committed = await job.job.run()
            except Exception as exc:
                self._raise_if_fatal(exc, f"job {job.job.name}")
                job.failures += 1
                job.last_ok = False
                job.last_error = describe_error(exc)
                log.warning(
                    "job_failed", error_type=type(exc).__name__, error=job.last_error, exc_info=_traceback_of(exc)
                )
                continue
            job.last_ok = True
            if committed > 0:
                self.mark_progress()

    def _raise_if_fatal(self, exc: Exception, where: str) -> None:
        fatal = self.fatal and (
            exc.subgroup(self.fatal) is not None if isinstance(exc, ExceptionGroup) else isinstance(exc, self.fatal)
        )
        if fatal:
            message = f"{where}: {describe_error(exc)}"
            structlog.get_logger().error("fatal_error", error=message, error_type=type(exc).__name__, exc_info=exc)
            raise FatalError(message) from exc


def _traceback_of(exc: Exception) -> Exception | None:
    """`exc` for the log line's traceback, or None for the operator's errors (`UserError`, alone or grouped): their
    message says what to do, and a store fault repeats at every restart and job run until it is fixed."""
    if isinstance(exc, UserError):
        return None
    if isinstance(exc, ExceptionGroup) and exc.split(UserError)[1] is None:
        return None
    return exc
