"""Supervisor: restarts with growing, resetting backoff; one failure never stops the others; clean cancellation."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from hydra_daemon.ingest import IngestPipeline, PipelineState, Problem
from hydra_daemon.redaction import MASK, clear_secrets, register_secret
from hydra_daemon.runtime.health import wedged_pipelines
from hydra_daemon.runtime.supervisor import (
    FatalError,
    PeriodicJob,
    PipelineRecord,
    RestartPolicy,
    Supervisor,
    SupervisorState,
)
from tests.helpers import eventually

FAST = RestartPolicy(initial_s=0.01, max_s=1.0, multiplier=2.0, jitter=0.2, healthy_after_s=60.0)


class Sink:
    """The 'store' of the test pipelines: values in commit order, and how many instances closed cleanly."""

    def __init__(self) -> None:
        self.values: list[int] = []
        self.closed = 0


class CountingPipeline(IngestPipeline[list[int]]):
    """Emits consecutive integers resuming after the sink's last value; fails on batch `fail_on`, stops after
    `stop_after` batches (returning, which the supervisor must treat as unexpected)."""

    def __init__(self, sink: Sink, *, fail_on: int | None = None, stop_after: int | None = None) -> None:
        super().__init__(markets=("TEST",), schema="counter")
        self.sink = sink
        self.fail_on = fail_on
        self.stop_after = stop_after

    async def fetch(self) -> AsyncIterator[list[int]]:
        try:
            produced = 0
            while self.stop_after is None or produced < self.stop_after:
                await anyio.sleep(0.005)
                produced += 1
                if produced == self.fail_on:
                    raise ConnectionError(f"batch {produced} lost")
                start = self.sink.values[-1] + 1 if self.sink.values else 0
                yield [start, start + 1]
        finally:
            self.sink.closed += 1

    def validate(self, batch: list[int]) -> tuple[list[int], list[Problem]]:
        return batch, []

    async def persist(self, clean: list[int]) -> int:
        self.sink.values.extend(clean)
        return len(clean)


async def run_while(supervisor: Supervisor, body: Callable[[], Awaitable[None]]) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(supervisor.run)
        await body()
        group.cancel_scope.cancel()


async def test_failing_pipeline_restarts_while_the_other_keeps_running() -> None:
    steady, flaky = Sink(), Sink()
    supervisor = Supervisor(
        [("steady", lambda: CountingPipeline(steady)), ("flaky", lambda: CountingPipeline(flaky, fail_on=2))],
        policy=FAST,
    )
    records = supervisor.records

    async def body() -> None:
        await eventually(
            lambda: records["steady"].current is not None and records["steady"].current.stats.batches > 0,
            "a steady batch",
        )
        before = len(steady.values)
        await eventually(lambda: records["flaky"].restarts >= 3, "three restarts")
        await eventually(lambda: len(steady.values) > before, "steady values after the restarts")

    with capture_logs() as logs:
        await run_while(supervisor, body)

    assert records["steady"].restarts == 0
    assert records["flaky"].last_failure == "ConnectionError: batch 2 lost"
    assert records["flaky"].last_failure_at is not None
    assert flaky.values == list(range(len(flaky.values))), "each fresh instance resumes after the stored values"
    assert steady.values == list(range(len(steady.values)))
    assert {r.state for r in records.values()} == {"stopped"}
    assert steady.closed == 1, "cancellation ran the steady pipeline's finally block"
    restarts = [e for e in logs if e["event"] == "pipeline_restarting" and e["pipeline"] == "flaky"]
    delays = [e["retry_in_s"] for e in restarts[:4]]
    assert len(delays) >= 3
    assert delays == sorted(delays) and delays[0] < delays[-1], "backoff grows while runs stay short"
    failed = next(e for e in logs if e["event"] == "pipeline_failed")
    assert failed["error_type"] == "ConnectionError"


async def test_backoff_resets_after_a_healthy_run() -> None:
    sink = Sink()
    policy = RestartPolicy(initial_s=0.01, max_s=10.0, multiplier=10.0, jitter=0.2, healthy_after_s=0.0)
    supervisor = Supervisor([("flaky", lambda: CountingPipeline(sink, fail_on=2))], policy=policy)
    with capture_logs() as logs:
        await run_while(
            supervisor, lambda: eventually(lambda: supervisor.records["flaky"].restarts >= 4, "four restarts")
        )
    delays = [e["retry_in_s"] for e in logs if e["event"] == "pipeline_restarting"]
    assert len(delays) >= 4
    assert max(delays) <= 0.012, "every run counted as healthy, so every restart used the initial delay"


async def test_pipeline_that_returns_is_restarted_as_unexpected() -> None:
    sink = Sink()
    supervisor = Supervisor([("finite", lambda: CountingPipeline(sink, stop_after=1))], policy=FAST)
    with capture_logs() as logs:
        await run_while(
            supervisor, lambda: eventually(lambda: supervisor.records["finite"].restarts >= 2, "two restarts")
        )
    record = supervisor.records["finite"]
    assert record.last_failure == "returned unexpectedly"
    assert any(e["event"] == "pipeline_restarting" and e["reason"] == "returned" for e in logs)
    assert sink.values[:4] == [0, 1, 2, 3]


async def test_factory_failure_is_a_restart_and_its_secret_is_masked() -> None:
    clear_secrets()
    register_secret("db-FactoryKey987654321")
    calls = 0

    def factory() -> CountingPipeline:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise PermissionError("store refused key db-FactoryKey987654321")
        return CountingPipeline(Sink())

    supervisor = Supervisor([("cot", factory)], policy=FAST)
    record = supervisor.records["cot"]
    try:
        await run_while(supervisor, lambda: eventually(record.started, "a started pipeline"))
    finally:
        clear_secrets()
    assert record.restarts == 2
    assert record.last_failure == f"PermissionError: store refused key {MASK}"


async def test_periodic_jobs_count_failures_and_mark_progress() -> None:
    outcomes: Iterator[ValueError | int] = iter([ValueError("compaction failed"), 0, 3])
    done = anyio.Event()

    async def job() -> int:
        outcome = next(outcomes, 0)
        if isinstance(outcome, Exception):
            raise outcome
        if outcome:
            done.set()
        return outcome

    constructed = time.monotonic()
    supervisor = Supervisor([], jobs=[PeriodicJob("flush", 0.001, job)])
    await run_while(supervisor, done.wait)
    record = supervisor.jobs["flush"]
    assert record.failures == 1
    assert record.runs >= 3
    assert record.last_ok is True
    assert record.as_dict()["last_error"] == "ValueError: compaction failed"
    assert supervisor.progress_age_s() < time.monotonic() - constructed, "a job's commit counts as progress"


def test_progress_sampling_sees_counter_changes_only() -> None:
    pipeline = CountingPipeline(Sink())
    record = PipelineRecord("p", lambda: pipeline, state=SupervisorState.RUNNING, current=pipeline)
    assert record.sample(now=10.0)
    assert not record.sample(now=20.0)
    assert record.last_progress == 10.0
    pipeline.stats.records += 2
    pipeline.stats.last_record_time = datetime.now(UTC)
    assert record.sample(now=30.0)
    assert not record.sample(now=40.0), "lag growing with the clock is not progress"
    assert record.as_dict(now=45.0)["progress_age_s"] == 15.0


@pytest.mark.parametrize(
    ("waiting", "working"),
    [
        (PipelineState.IDLE, PipelineState.POLLING),  # COT slept a week until the release, now downloads it
        (PipelineState.WAITING_FOR_RELEASE, PipelineState.POLLING),  # a late release, polled again
        (PipelineState.RECONNECTING, PipelineState.CONNECTING),  # a long venue outage, the next attempt
    ],
)
def test_a_pipeline_that_just_stopped_waiting_by_design_is_not_wedged(
    waiting: PipelineState, working: PipelineState
) -> None:
    """Its counters last moved before the wait: the stall counts from the wait's end, not its start (found by a
    review helper: health said failed and the watchdog was withheld during every COT download)."""
    pipeline = CountingPipeline(Sink())
    supervisor = Supervisor([("p", lambda: pipeline)])
    record = supervisor.records["p"]
    record.state, record.current = SupervisorState.RUNNING, pipeline
    pipeline.stats.state = waiting
    record.sample(now=time.monotonic() - 7 * 86_400.0)
    record.sample(now=time.monotonic() - 1.0)
    assert wedged_pipelines(supervisor, 300.0) == []
    pipeline.stats.state = working
    supervisor.sample_progress()
    assert wedged_pipelines(supervisor, 300.0) == []
    record.sample(now=time.monotonic() - 1.0)  # no counter moved
    record.last_waiting -= 400.0  # ...and the wait ended 400 s ago: now it is wedged
    [(name, age)] = wedged_pipelines(supervisor, 300.0)
    assert name == "p" and 400.0 <= age < 410.0


def test_started_needs_a_batch_or_a_started_state() -> None:
    pipeline = CountingPipeline(Sink())
    record = PipelineRecord("p", lambda: pipeline, state=SupervisorState.RUNNING, current=pipeline)
    pipeline.stats.state = PipelineState.RUNNING
    assert not record.started()
    pipeline.stats.state = PipelineState.STREAMING
    assert record.started()
    pipeline.stats.state = PipelineState.POLLING
    pipeline.stats.batches = 1
    assert record.started()
    record.state = SupervisorState.BACKOFF
    assert not record.started()


def test_summary_is_one_line_per_daemon() -> None:
    supervisor = Supervisor([("fut", lambda: CountingPipeline(Sink())), ("cot", lambda: CountingPipeline(Sink()))])
    supervisor.records["cot"].restarts = 2
    assert supervisor.summary() == "fut: starting; cot: starting (2 restarts)"


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        Supervisor([("a", lambda: CountingPipeline(Sink())), ("a", lambda: CountingPipeline(Sink()))])


@given(attempt=st.integers(min_value=0, max_value=200), seed=st.integers(min_value=0, max_value=2**32))
def test_backoff_delay_is_bounded_and_jittered(attempt: int, seed: int) -> None:
    policy = RestartPolicy(initial_s=1.0, max_s=300.0, multiplier=2.0, jitter=0.2)
    delay = policy.backoff(random.Random(seed)).delay_s(attempt)
    base = min(300.0, 2.0**attempt)
    assert base * 0.8 <= delay <= base * 1.2


class LeaseLost(RuntimeError):
    """Stands for the store's LeaseLostError: restarting the pipeline cannot help."""


async def test_fatal_error_is_not_retried_and_stops_everything() -> None:
    steady = Sink()

    async def lease_check() -> int:
        raise LeaseLost("lease taken over by host-b")

    supervisor = Supervisor(
        [("steady", lambda: CountingPipeline(steady))],
        jobs=[PeriodicJob("lease", 0.05, lease_check)],
        fatal=(LeaseLost,),
    )
    with pytest.raises(ExceptionGroup) as caught:
        await supervisor.run()
    fatal, rest = caught.value.split(FatalError)
    assert rest is None and fatal is not None
    assert "job lease: LeaseLost: lease taken over by host-b" in str(caught.value.exceptions[0])
    assert steady.closed == 1
    assert supervisor.records["steady"].state == "stopped"
    assert supervisor.jobs["lease"].failures == 0
