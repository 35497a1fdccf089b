"""The daemon's main coroutine: supervisor, health socket, systemd notify/watchdog and signal handling.

The caller opens the store (taking the writer lease) and builds the pipeline factories; `run_daemon` runs them
until SIGTERM/SIGINT, then cancels everything (pipelines flush in their own `finally`), sends STOPPING=1 and
returns normally so the process exits 0. SIGHUP is logged and ignored.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import structlog
from anyio import CancelScope
from anyio.abc import TaskStatus

from hydra_daemon.config import Config
from hydra_daemon.redaction import register_secret, register_uri_secrets
from hydra_daemon.runtime.health import DaemonState, health_document, open_health_socket, serve_health
from hydra_daemon.runtime.supervisor import FatalError, PeriodicJob, PipelineFactory, RestartPolicy, Supervisor
from hydra_daemon.runtime.systemd_notify import Notifier, watchdog_interval_s
from hydra_daemon.secrets import ApiKey


@dataclass(frozen=True)
class RuntimeOptions:
    """Runtime tuning: restart backoff, how long to wait for every source before READY=1 anyway, and how long
    without any progress before the watchdog stops pinging (systemd then restarts the daemon)."""

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
) -> int:
    """Run `pipelines` (name, factory) and `jobs` under supervision until SIGTERM/SIGINT.

    Returns the process exit code: 0 after a signalled, clean stop; 1 when a pipeline or job raised one of the
    `fatal` exception types (e.g. `LeaseLostError`), so systemd's Restart=on-failure starts a fresh daemon.
    """
    opts = options or RuntimeOptions()
    env = os.environ if environ is None else environ
    log = structlog.get_logger()
    notifier = Notifier(env)
    supervisor = Supervisor(pipelines, policy=opts.restart, jobs=jobs, fatal=fatal)
    state = DaemonState.now(config.storage.arctic_uri, opts.stall_after_s)
    watchdog_s = watchdog_interval_s(env)
    log.info("daemon_starting", pid=os.getpid(), pipelines=list(supervisor.records), watchdog_s=watchdog_s)
    listener = await open_health_socket(config.health_socket)
    try:
        async with anyio.create_task_group() as group:
            await group.start(_handle_signals, group.cancel_scope, notifier, state)
            group.start_soon(serve_health, listener, config.health_socket, lambda: health_document(supervisor, state))
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


async def _monitor(supervisor: Supervisor, notifier: Notifier, state: DaemonState, options: RuntimeOptions) -> None:
    """Sample progress, send READY=1 once every source started (or after the timeout), keep STATUS= current."""
    log = structlog.get_logger()
    last_status = ""
    while True:
        supervisor.sample_progress()
        summary = supervisor.summary()
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


async def _watchdog(supervisor: Supervisor, notifier: Notifier, interval_s: float, stall_after_s: float) -> None:
    """Ping WATCHDOG=1 every `interval_s` while something made progress within `stall_after_s`."""
    log = structlog.get_logger()
    while True:
        supervisor.sample_progress()
        age = supervisor.progress_age_s()
        if age <= stall_after_s:
            notifier.watchdog()
        else:
            log.warning(
                "watchdog_withheld",
                progress_age_s=round(age, 3),
                stall_after_s=stall_after_s,
                summary=supervisor.summary(),
            )
        await anyio.sleep(interval_s)


def protect_secrets(config: Config, api_key: ApiKey | None) -> None:
    """Register the API key and any store credentials so logs and health answers mask them; call at startup."""
    if api_key is not None:
        register_secret(api_key.reveal())
    register_uri_secrets(config.storage.arctic_uri)
