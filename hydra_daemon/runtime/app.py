"""Assemble the production daemon from a Config: open the store, build the pipeline factories, run them."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import anyio
import structlog

from hydra_daemon.clock import Clock, WallClock
from hydra_daemon.config import Config, StorageConfig
from hydra_daemon.cot.pipeline import build_cot_pipeline
from hydra_daemon.futures.pipeline import FuturesIngestPipeline
from hydra_daemon.lake.exporter import LakeExporter
from hydra_daemon.options.pipeline import OptionsIngestPipeline
from hydra_daemon.runtime.daemon import RuntimeOptions, protect_secrets, run_daemon
from hydra_daemon.runtime.supervisor import PeriodicJob, PipelineFactory
from hydra_daemon.secrets import ApiKey, load_api_key
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.maintenance import Maintenance, MaintenancePolicy


def pipeline_factories(config: Config, store: Store, key: ApiKey, clock: Clock) -> list[tuple[str, PipelineFactory]]:
    """One factory per pipeline (futures, options, and COT when enabled); each restart builds a fresh pipeline.

    Every pipeline keeps `clock`'s time (the simulated venue's accelerated time in the demo).
    """
    factories: list[tuple[str, PipelineFactory]] = [
        ("futures", lambda: FuturesIngestPipeline(config, store, key, clock=clock)),
        ("options", lambda: OptionsIngestPipeline(config, store, key, clock=clock)),
        ("cot", lambda: build_cot_pipeline(config, store, clock)),
    ]
    return [f for f in factories if f[0] != "cot" or config.cot.enabled]


def maintenance_job(store: Store, storage: StorageConfig, clock: Clock) -> PeriodicJob:
    """Compaction, pruning and daily snapshots (UTC days of `clock`) every `maintenance_interval_s`, in a worker
    thread; never counted as progress (only data flowing is)."""
    policy = MaintenancePolicy(storage.compact_every, storage.prune_grace_s, storage.keep_daily_snapshots_days)
    maintenance = Maintenance(store, policy, clock=clock.now_ns)

    async def run() -> int:
        if not store.status.failed:  # writes stopped: health says why, and the next process maintains the store
            await anyio.to_thread.run_sync(maintenance.run_once)
        return 0

    return PeriodicJob("store_maintenance", storage.maintenance_interval_s, run)


STORE_WATCH_INTERVAL_S = 1.0


class RestartRequired(RuntimeError):
    """A store fault that stopped this process's writes has cleared: a fresh process resumes capture (LMDB cannot
    write again after a failed commit; a lease taken over is retaken by a fresh open), so the daemon exits with
    status 1 and systemd's Restart=on-failure starts it again."""


def store_watch_job(store: Store) -> PeriodicJob:
    """Every second, in a worker thread: once a fault that stopped writes has cleared (`Store.fault_cleared`), say so
    and end the daemon with status 1. Until then health says failed with the fault and its fix."""

    async def run() -> int:
        cleared = await anyio.to_thread.run_sync(store.fault_cleared)
        if cleared is not None:
            structlog.get_logger().warning(
                "store_fault_cleared",
                cleared=cleared,
                action="exiting with status 1: systemd restarts the daemon and capture resumes from its watermarks",
            )
            raise RestartRequired(cleared)
        return 0

    return PeriodicJob("store_watch", STORE_WATCH_INTERVAL_S, run)


def lake_jobs(config: Config, store: Store, clock: Clock) -> list[PeriodicJob]:
    """The lake export (when `[lake] enabled`): its own supervised job, off the capture path; like maintenance, never
    counted as progress (exporting stored days says nothing about data flowing)."""
    if not config.lake.enabled:
        return []
    exporter = LakeExporter(config, store, clock)

    async def run() -> int:
        if not store.status.failed:  # as maintenance: the next process exports what is due
            await exporter.run_once()
        return 0

    return [PeriodicJob("lake", exporter.interval_s, run)]


def run_app(
    config: Config,
    *,
    environ: Mapping[str, str] | None = None,
    options: RuntimeOptions | None = None,
    clock: Clock | None = None,
) -> int:
    """Run the daemon until SIGTERM/SIGINT on `clock` (wall time by default); returns the exit code. Raises
    SecretError / StoreLockedError early."""
    key = load_api_key(config.databento, dict(environ) if environ is not None else None)
    protect_secrets(config, key)
    with Store.open(config.storage.arctic_uri, writer=True) as store:
        clock = clock or WallClock()
        factories = pipeline_factories(config, store, key, clock)
        run = partial(
            run_daemon,
            config,
            factories,
            jobs=[
                maintenance_job(store, config.storage, clock),
                store_watch_job(store),
                *lake_jobs(config, store, clock),
            ],
            fatal=(RestartRequired,),
            options=options,
            environ=environ,
            clock=clock,
            store_usage=store.usage,
        )
        return anyio.run(run)
