"""Health: what the daemon says about itself over HTTP on its Unix socket (and an optional TCP listener).

`GET /health` answers one JSON document: identity, uptime, the store (credentials masked) and its usage, the data
clock, and per pipeline its counters, restart bookkeeping, `status` (ok, closed, degraded, failed — see
`hydra_daemon.runtime.assessment`) with `reasons` and `markets`: each market's own verdict and deliveries (a Globex
pipeline's; empty for COT); `status` at the top is the worst of them and of the daemon's own
(starting, stopping, a failing periodic job, a wedged pipeline, the store). HTTP 200 when the overall status is ok
or closed, 503 when degraded or failed, so a plain HTTP check works too. `GET /metrics` is the Prometheus text
exposition (`hydra_daemon.runtime.metrics`). The client (`hydra-daemon health`) is
`hydra_daemon.runtime.health_client`, which imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import SocketListener

from hydra_daemon.clock import Clock
from hydra_daemon.cme_sessions import GLOBEX, MarketSchedule
from hydra_daemon.errors import UserError
from hydra_daemon.redaction import redact_value
from hydra_daemon.runtime.assessment import (
    HealthLimits,
    MarketView,
    PipelineView,
    Schedule,
    Status,
    Verdict,
    assess_markets,
    assess_pipeline,
    assess_store,
    lag_limit_s,
    open_lag_s,
    worst,
)
from hydra_daemon.runtime.http_server import Response, Route, serve_http
from hydra_daemon.runtime.supervisor import PipelineRecord, Supervisor, SupervisorState
from hydra_daemon.store.uri import redact_uri
from hydra_daemon.store.usage import StoreUsage

SOCKET_MODE = 0o660
GLOBEX_SCHEMAS = frozenset(
    {"ohlcv-1s", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d", "mbp-1", "trades", "definition", "statistics"}
)
"""Schemas that trade on the Globex calendar; a pipeline of other schemas (other than "cot") follows no calendar."""


class HealthSocketError(UserError, RuntimeError):
    """The health socket cannot be created (in use by a live daemon, or not a socket)."""


@dataclass
class DaemonState:
    """What health reports besides the supervisor: identity, readiness, the data clock, thresholds, store usage."""

    store_uri: str
    stall_after_s: float
    clock: Clock
    limits: HealthLimits = field(default_factory=HealthLimits)
    store_usage: Callable[[], StoreUsage] | None = None
    """Asks the store (file stats: call it from a worker thread); `refresh_usage` keeps `usage` current."""
    market_hours: Mapping[str, MarketSchedule] = field(default_factory=dict)
    """`[[markets]] hours` by market name (a market missing here trades the whole Globex session)."""
    usage: StoreUsage | None = None
    started_at: datetime = field(init=False)
    started_monotonic: float = field(default_factory=time.monotonic)
    ready: bool = False
    stopping: bool = False
    deliveries: dict[str, tuple[int, int, datetime | None]] = field(default_factory=dict)
    """pipeline -> (instance id, records, when records last grew on the data clock)."""
    market_deliveries: dict[tuple[str, str], tuple[datetime, datetime]] = field(default_factory=dict)
    """(pipeline, market) -> (the newest record time seen of it by any instance, when it last advanced on the data
    clock). Kept across restarts: a new instance's replay of records already seen is not a delivery."""
    schema_record_times: dict[tuple[str, str], dict[str, datetime]] = field(default_factory=dict)
    """(pipeline, market) -> schema -> the newest record time seen of it by any instance (kept across restarts)."""

    def __post_init__(self) -> None:
        self.started_at = self.clock.now()

    async def refresh_usage(self) -> None:
        """Ask the store for its usage off the event loop (the monitor calls this every tick)."""
        if self.store_usage is not None:
            self.usage = await anyio.to_thread.run_sync(self.store_usage)

    def last_delivery(self, record: PipelineRecord) -> datetime | None:
        """When `record`'s pipeline last stored records (data clock); None if it has not since the daemon started.

        Sampled on every call (health, metrics, the monitor's tick), so its resolution is the monitor interval."""
        pipeline = record.current
        records = pipeline.stats.records if pipeline is not None else 0
        instance = 0 if pipeline is None else id(pipeline)
        previous = self.deliveries.get(record.name)
        at = None if previous is None else previous[2]
        if records > (previous[1] if previous is not None and previous[0] == instance else 0):
            at = self.clock.now()
        self.deliveries[record.name] = (instance, records, at)
        return at

    def market_delivery(self, record: PipelineRecord, market: str) -> tuple[datetime | None, datetime | None]:
        """(When `record`'s pipeline last delivered records of `market` newer than any it delivered before, on the
        data clock; the newest one's time), both None if none since the daemon started. Sampled as `last_delivery`.
        By record time, not count: a restarted pipeline's new instance replays the overlap before the watermark, and
        counting that as a delivery made a silent market look fresh (invariant 9)."""
        pipeline = record.current
        progress = pipeline.stats.markets.get(market) if pipeline is not None else None
        newest = None if progress is None else progress.last_record_time
        key = (record.name, market)
        previous = self.market_deliveries.get(key)
        if newest is not None and (previous is None or newest > previous[0]):
            self.market_deliveries[key] = previous = (newest, self.clock.now())
        return (None, None) if previous is None else (previous[1], previous[0])

    def schema_times(self, record: PipelineRecord, market: str) -> dict[str, datetime]:
        """Per schema, the newest record time of `market` that `record`'s pipeline delivered since the daemon
        started, by any of its instances."""
        pipeline = record.current
        progress = pipeline.stats.markets.get(market) if pipeline is not None else None
        kept = self.schema_record_times.setdefault((record.name, market), {})
        for schema, newest in ({} if progress is None else progress.schemas).items():
            if schema not in kept or newest > kept[schema]:
                kept[schema] = newest
        return dict(kept)

    def market_schedule(self, market: str) -> MarketSchedule:
        return self.market_hours.get(market, GLOBEX)


@dataclass(frozen=True)
class MarketHealth:
    """One market's verdict within a Globex pipeline and the inputs metrics export with it."""

    verdict: Verdict
    last_delivery: datetime | None
    last_record_time: datetime | None
    open_lag_s: float | None
    lag_limit_s: float | None
    schema_record_times: Mapping[str, datetime] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            **self.verdict.as_dict(),
            "last_delivery": _iso(self.last_delivery),
            "last_record_time": _iso(self.last_record_time),
            "schema_record_times": {schema: _iso(t) for schema, t in sorted(self.schema_record_times.items())},
            "open_lag_s": None if self.open_lag_s is None else round(self.open_lag_s, 3),
            "lag_limit_s": self.lag_limit_s,
        }


@dataclass(frozen=True)
class PipelineHealth:
    """One pipeline's verdict and the inputs metrics export with it (`per_market`: a Globex pipeline's markets)."""

    name: str
    markets: str
    schema: str
    verdict: Verdict
    last_delivery: datetime | None
    lag_s: float | None
    per_market: dict[str, MarketHealth] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthSnapshot:
    """Everything health and metrics say at one instant (data clock `now`)."""

    now: datetime
    status: Status
    daemon: Verdict
    store: Verdict
    usage: StoreUsage | None
    pipelines: dict[str, PipelineHealth]


@functools.cache
def daemon_version() -> str:
    """The installed hydra-daemon version."""
    try:
        return metadata.version("hydra-daemon")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def schedule_of(schema: str) -> Schedule:
    """The calendar a pipeline's comma-separated schemas follow."""
    schemas = set(schema.split(","))
    if schemas == {"cot"}:
        return Schedule.COT
    return Schedule.GLOBEX if schemas <= GLOBEX_SCHEMAS else Schedule.NONE


def pipeline_health(record: PipelineRecord, state: DaemonState, now: datetime) -> PipelineHealth:
    """The verdict on one supervised pipeline at `now` (data clock)."""
    delivered_at = state.last_delivery(record)
    pipeline = record.current
    stats = pipeline.stats if pipeline is not None else None
    schema = pipeline.schema if pipeline is not None else ""
    problems = tuple(r for r in (stats.degraded_reason if stats else None,) if r)
    markets = pipeline.markets if pipeline is not None else ()
    schedule = schedule_of(schema)
    view = PipelineView(
        name=record.name,
        schedule=schedule,
        schemas=tuple(schema.split(",")),
        supervisor_state=record.state,
        state=stats.state if stats is not None and record.state == SupervisorState.RUNNING else record.state,
        since=state.started_at,
        markets=_market_views(record, state) if schedule is Schedule.GLOBEX else (),
        last_record_time=stats.last_record_time if stats else None,
        crashes_in_row=record.crashes_in_row,
        last_error=(stats.last_error if stats else None) or record.last_failure,
        problems=problems,
    )
    verdict = assess_pipeline(view, now, state.limits)
    lag = None
    if stats is not None and stats.last_record_time is not None:
        lag = (now - stats.last_record_time).total_seconds()
    per_market = _market_health(view, now, state.limits)
    return PipelineHealth(record.name, ",".join(markets), schema, verdict, delivered_at, lag, per_market)


def _market_views(record: PipelineRecord, state: DaemonState) -> tuple[MarketView, ...]:
    pipeline = record.current
    if pipeline is None:
        return ()
    views = []
    for market in pipeline.markets:
        delivered_at, newest = state.market_delivery(record, market)
        schedule = state.market_schedule(market)
        views.append(MarketView(market, schedule, delivered_at, newest, state.schema_times(record, market)))
    return tuple(views)


def _market_health(view: PipelineView, now: datetime, limits: HealthLimits) -> dict[str, MarketHealth]:
    verdicts = assess_markets(view, now, limits)
    return {
        m.name: MarketHealth(
            verdicts[m.name],
            m.last_delivery,
            m.last_record_time,
            open_lag_s(m.last_record_time, now, m.hours),
            lag_limit_s(view.schemas, limits, m.hours),
            m.schema_record_times,
        )
        for m in view.markets
    }


def take_snapshot(supervisor: Supervisor, state: DaemonState) -> HealthSnapshot:
    """Assess every pipeline, the store and the daemon itself, now."""
    supervisor.sample_progress()
    now = state.clock.now()
    pipelines = {name: pipeline_health(record, state, now) for name, record in supervisor.records.items()}
    usage = state.usage
    store_problems = [] if usage is None else [p for p in (usage.problem,) if p]
    if usage is not None and not usage.lease_held:
        store_problems.append("writer lease lost")
    retrying = () if usage is None or usage.retrying is None else (usage.retrying,)
    store = assess_store(None if usage is None else usage.map_fraction, store_problems, state.limits, retrying)
    daemon = _daemon_verdict(supervisor, state)
    own = [v for v in (daemon, store) if v.status is not Status.OK]  # so every pipeline closed is closed overall
    status = worst([*own, *(p.verdict for p in pipelines.values())])
    return HealthSnapshot(now, status, daemon, store, usage, pipelines)


def _daemon_verdict(supervisor: Supervisor, state: DaemonState) -> Verdict:
    reasons = []
    if state.stopping:
        reasons.append("stopping")
    elif not state.ready:
        reasons.append("starting: waiting for every source to come up")
    if not supervisor.records:
        return Verdict(Status.FAILED, ("no pipeline configured",))
    reasons += [
        f"job {name} failing: {job.last_error}" for name, job in supervisor.jobs.items() if job.last_ok is False
    ]
    wedged = wedged_pipelines(supervisor, state.stall_after_s)
    if wedged:
        return Verdict(Status.FAILED, tuple(f"pipeline {n} wedged: no progress for {age:.0f} s" for n, age in wedged))
    return Verdict(Status.DEGRADED, tuple(reasons)) if reasons else Verdict(Status.OK)


def wedged_pipelines(supervisor: Supervisor, stall_after_s: float) -> list[tuple[str, float]]:
    """Running pipelines whose work counters have not moved for `stall_after_s`, though they do not wait by design
    (a reconnect backoff, an authentication hold, COT's sleep until the next release). A streaming session moves
    its counters several times a second (idle ticks), so only a hung task stays still this long."""
    now = time.monotonic()
    wedged = []
    for name, record in supervisor.records.items():
        stats = record.current.stats if record.current is not None else None
        if record.state != SupervisorState.RUNNING or stats is None or stats.state.waits_by_design:
            continue
        age = now - max(record.last_progress, record.last_waiting)  # not the whole wait it just woke from
        if age > stall_after_s:
            wedged.append((name, age))
    return wedged


def health_document(snapshot: HealthSnapshot, supervisor: Supervisor, state: DaemonState) -> dict[str, Any]:
    """The JSON-safe health answer, with every secret masked."""
    monotonic = time.monotonic()
    pipelines = {}
    for name, record in supervisor.records.items():
        item = snapshot.pipelines[name]
        pipelines[name] = {
            **record.as_dict(monotonic),
            "status": item.verdict.status.value,
            "reasons": list(item.verdict.reasons),
            "last_delivery": None if item.last_delivery is None else item.last_delivery.isoformat(),
            "lag_s": None if item.lag_s is None else round(item.lag_s, 3),
            "markets": {market: detail.as_dict() for market, detail in item.per_market.items()},
        }
    usage = snapshot.usage
    document = {
        "daemon": "hydra-daemon",
        "version": daemon_version(),
        "pid": os.getpid(),
        "started_at": state.started_at.isoformat(),
        "uptime_s": round(monotonic - state.started_monotonic, 3),
        "data_clock": snapshot.now.isoformat(),
        "store": redact_uri(state.store_uri),
        "store_usage": None if usage is None else {**usage.__dict__, "map_fraction": usage.map_fraction},
        "ready": state.ready,
        "status": snapshot.status.value,
        "reasons": [*snapshot.daemon.reasons, *snapshot.store.reasons],
        "pipelines": pipelines,
        "jobs": {name: job.as_dict() for name, job in supervisor.jobs.items()},
    }
    redacted: dict[str, Any] = redact_value(document)
    return redacted


def health_routes(supervisor: Supervisor, state: DaemonState, metrics: Callable[[], bytes]) -> dict[str, Route]:
    """`/health` (200 when ok or closed, else 503) and `/metrics` for `serve_http`."""

    def health() -> Response:
        snapshot = take_snapshot(supervisor, state)
        body = json.dumps(health_document(snapshot, supervisor, state), sort_keys=True) + "\n"
        code = 200 if snapshot.status.severity == 0 else 503
        return Response(code, body.encode(), "application/json")

    def exposition() -> Response:
        return Response(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")

    return {"/health": health, "/metrics": exposition}


async def open_health_socket(path: Path) -> SocketListener:
    """Listen at `path` (mode 0660) in an existing directory; a stale socket is replaced, a live one refused."""
    await _prepare_socket_path(path)
    listener = await anyio.create_unix_listener(path, mode=SOCKET_MODE)
    structlog.get_logger().info("health_socket_listening", socket=str(path))
    return listener


async def serve_health(listener: SocketListener, path: Path, routes: dict[str, Route]) -> None:
    """Serve `routes` over HTTP on the socket until cancelled; then close and remove the socket file."""
    try:
        await serve_http(listener, routes)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_unlink_socket, path)


async def _prepare_socket_path(path: Path) -> None:
    """Refuse a missing directory, a live socket or a non-socket file; remove a stale socket."""
    if not await anyio.to_thread.run_sync(_socket_file_present, path):
        return
    try:
        with anyio.fail_after(2):
            stream = await anyio.connect_unix(path)
    except (OSError, TimeoutError):
        await anyio.to_thread.run_sync(_unlink_socket, path)
        return
    await stream.aclose()
    raise HealthSocketError(f"{path} is answered by another running daemon; stop it or set health_socket elsewhere")


def _socket_file_present(path: Path) -> bool:
    if not path.parent.is_dir():
        raise HealthSocketError(
            f"{path.parent} (the directory of health_socket) does not exist; create it "
            "(under systemd: RuntimeDirectory=hydra-daemon) or set health_socket elsewhere"
        )
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise HealthSocketError(f"{path} exists and is not a socket; remove it or set health_socket elsewhere")
    return True


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _unlink_socket(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
