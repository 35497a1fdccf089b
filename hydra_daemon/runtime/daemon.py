"""The daemon's main coroutine: supervisor, health socket (HTTP: /health, /metrics), the optional metrics listener,
systemd notify/watchdog and signal handling.

The caller opens the store (taking the writer lease) and builds the pipeline factories; `run_daemon` runs them
until SIGTERM/SIGINT, then cancels everything (pipelines flush in their own `finally`), sends STOPPING=1 and
returns normally so the process exits 0. SIGHUP is logged and ignored.

The watchdog (WATCHDOG=1 every half `WATCHDOG_USEC`) proves only that the event loop turns and the supervisor's
pipelines are not wedged (a running pipeline that does not wait by design made progress within `stall_after_s`).
It says nothing about data flowing: a venue outage or a refused key keeps the watchdog fed (restarting would not
help) while health says degraded or failed. Data flow is health's job.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import structlog
from anyio import CancelScope
from anyio.abc import SocketStream, TaskStatus
from anyio.streams.stapled import MultiListener

from hydra_daemon.clock import Clock, WallClock
from hydra_daemon.config import Config
from hydra_daemon.redaction import register_secret, register_uri_secrets
from hydra_daemon.runtime.assessment import HealthLimits
from hydra_daemon.runtime.health import (
    DaemonState,
    HealthSnapshot,
    HealthSocketError,
    health_routes,
    open_health_socket,
    serve_health,
    take_snapshot,
    wedged_pipelines,
)
from hydra_daemon.runtime.http_server import serve_http
from hydra_daemon.runtime.metrics import metrics_registry, render
from hydra_daemon.runtime.supervisor import FatalError, PeriodicJob, PipelineFactory, RestartPolicy, Supervisor
from hydra_daemon.runtime.systemd_notify import Notifier, watchdog_interval_s
from hydra_daemon.secrets import ApiKey
from hydra_daemon.store.usage import StoreUsage


@dataclass(frozen=True)
class RuntimeOptions:
    """Runtime tuning: restart backoff, how long to wait for every source before READY=1 anyway, and how long a
    running pipeline may make no progress (without waiting by design) before it counts as wedged: health says
    failed and the watchdog stops pinging (systemd then restarts the daemon)."""

    restart: RestartPolicy = field(default_factory=RestartPolicy)
    ready_timeout_s: float = 120.0
    stall_after_s: float = 300.0
    monitor_interval_s: float = 1.0


async def run_daemon(
    config: Config,
    pipelines: Sequence[tuple[str, PipelineFactory]],
    *,
    jobs: Sequence[PeriodicJob] = (),
    fatal: tuple[type[Exception], ...] = (),
    options: RuntimeOptions | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    store_usage: Callable[[], StoreUsage] | None = None,
) -> int:
    """Run `pipelines` (name, factory) and `jobs` under supervision until SIGTERM/SIGINT.

    Returns the process exit code: 0 after a signalled, clean stop; 1 when a pipeline or job raised one of the
    `fatal` exception types (e.g. `RestartRequired` once a store fault cleared), so systemd's Restart=on-failure
    starts a fresh daemon.
    Health judges market data on `clock` (the data's clock: the venue's in tests and the demo).
    """
    opts = options or RuntimeOptions()
    env = os.environ if environ is None else environ
    log = structlog.get_logger()
    notifier = Notifier(env)
    supervisor = Supervisor(pipelines, policy=opts.restart, jobs=jobs, fatal=fatal)
    limits = HealthLimits(
        stale_after_s=config.health.stale_after_s,
        cot_grace_s=config.health.cot_grace_s,
        cot_extra_closures=config.cot.extra_closures,
    )
    state = DaemonState(
        config.storage.arctic_uri,
        opts.stall_after_s,
        clock or WallClock(),
        limits,
        store_usage,
        market_hours={m.name: m.hours for m in config.markets},
    )
    registry = metrics_registry(supervisor, lambda: take_snapshot(supervisor, state))
    routes = health_routes(supervisor, state, lambda: render(registry))
    watchdog_s = watchdog_interval_s(env)
    log.info("daemon_starting", pid=os.getpid(), pipelines=list(supervisor.records), watchdog_s=watchdog_s)
    address = config.health.metrics_address()
    metrics = await _metrics_listener(address) if address is not None else None
    listener = await open_health_socket(config.health_socket)
    try:
        async with anyio.create_task_group() as group:
            await group.start(_handle_signals, group.cancel_scope, notifier, state)
            group.start_soon(serve_health, listener, config.health_socket, routes)
            if metrics is not None:
                group.start_soon(serve_http, metrics, routes)
            group.start_soon(supervisor.run)
            group.start_soon(_monitor, supervisor, notifier, state, opts)
            if watchdog_s is not None:
                group.start_soon(_watchdog, supervisor, notifier, watchdog_s / 2, opts.stall_after_s)
    except BaseExceptionGroup as errors:
        _, others = errors.split(FatalError)
        if others is not None:
            raise
        return 1
    finally:
        if not state.stopping:
            state.stopping = True
            notifier.stopping()
        notifier.close()
        log.info("daemon_stopped", summary=supervisor.summary())
    return 0


async def _handle_signals(
    scope: CancelScope,
    notifier: Notifier,
    state: DaemonState,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    log = structlog.get_logger()
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("sighup_ignored", reason="configuration reload is not supported; restart the service")
                continue
            log.info("shutdown_requested", signal=signal.Signals(signum).name)
            state.stopping = True
            notifier.stopping("stopping: flushing pipelines")
            scope.cancel()
            return


async def _metrics_listener(address: tuple[str, int]) -> MultiListener[SocketStream]:
    """The optional `[health] metrics_listen` TCP listener (serving the same routes as the socket), opened before
    anything starts: a port in use or a host that does not resolve is one error line, not a traceback."""
    host, port = address
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    except OSError as error:
        raise HealthSocketError(
            f"[health] metrics_listen {host}:{port}: cannot listen ({error.strerror or error}); free the port or "
            "set metrics_listen to another address"
        ) from None
    structlog.get_logger().info("metrics_listening", host=host, port=port)
    return listener


async def _monitor(supervisor: Supervisor, notifier: Notifier, state: DaemonState, options: RuntimeOptions) -> None:
    """Sample progress and deliveries, send READY=1 once every source started (or after the timeout), keep STATUS=
    current (with the overall health), and log every change of a pipeline's health status once."""
    log = structlog.get_logger()
    last_status = ""
    statuses: dict[str, str] = {}
    while True:
        await state.refresh_usage()
        snapshot = take_snapshot(supervisor, state)
        if state.ready:  # while starting every source is degraded by definition: not news
            _log_status_changes(snapshot, statuses)
        summary = f"{snapshot.status.value}: {supervisor.summary()}"
        if not state.ready:
            waited = time.monotonic() - state.started_monotonic
            if supervisor.all_started() or waited >= options.ready_timeout_s:
                state.ready = True
                waiting = [n for n, r in supervisor.records.items() if not r.started()]
                if waiting:
                    log.warning("ready_timeout", waiting_for=waiting, ready_timeout_s=options.ready_timeout_s)
                log.info("daemon_ready", summary=summary)
                notifier.ready(summary)
                last_status = summary
        elif summary != last_status:
            notifier.status(summary)
            last_status = summary
        await anyio.sleep(options.monitor_interval_s)


def _log_status_changes(snapshot: HealthSnapshot, seen: dict[str, str]) -> None:
    """One log line per change of a pipeline's health status (warning when it gets worse than closed)."""
    log = structlog.get_logger()
    for name, item in snapshot.pipelines.items():
        status = item.verdict.status
        if seen.get(name, "ok") != status.value:
            emit = log.warning if status.severity else log.info
            emit("pipeline_health_changed", pipeline=name, status=status.value, reasons=list(item.verdict.reasons))
        seen[name] = status.value


async def _watchdog(supervisor: Supervisor, notifier: Notifier, interval_s: float, stall_after_s: float) -> None:
    """Ping WATCHDOG=1 every `interval_s` while no pipeline is wedged (see the module docstring)."""
    log = structlog.get_logger()
    while True:
        supervisor.sample_progress()
        wedged = wedged_pipelines(supervisor, stall_after_s)
        if not wedged:
            notifier.watchdog()
        else:
            log.warning(
                "watchdog_withheld",
                wedged={name: round(age, 3) for name, age in wedged},
                progress_age_s=round(max(age for _, age in wedged), 3),
                stall_after_s=stall_after_s,
                summary=supervisor.summary(),
            )
        await anyio.sleep(interval_s)


def protect_secrets(config: Config, api_key: ApiKey | None) -> None:
    """Register the API key and any store credentials so logs and health answers mask them; call at startup."""
    if api_key is not None:
        register_secret(api_key.reveal())
    register_uri_secrets(config.storage.arctic_uri)
