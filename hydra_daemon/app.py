"""Assemble the production daemon from a Config: open the store, build the pipeline factories, run them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import anyio

from hydra_daemon.config import Config
from hydra_daemon.cot.pipeline import build_cot_pipeline
from hydra_daemon.daemon import RuntimeOptions, protect_secrets, run_daemon
from hydra_daemon.pipelines.futures import FuturesIngestPipeline
from hydra_daemon.pipelines.options import OptionsIngestPipeline
from hydra_daemon.secrets import ApiKey, load_api_key
from hydra_daemon.store.arctic import LeaseLostError, Store
from hydra_daemon.supervisor import PipelineFactory


def pipeline_factories(config: Config, store: Store, key: ApiKey) -> list[tuple[str, PipelineFactory]]:
    """One factory per pipeline (futures, options, and COT when enabled); each restart builds a fresh pipeline."""
    factories: list[tuple[str, PipelineFactory]] = [
        ("futures", lambda: FuturesIngestPipeline(config, store, key)),
        ("options", lambda: OptionsIngestPipeline(config, store, key)),
    ]
    if config.cot.enabled:
        factories.append(("cot", lambda: build_cot_pipeline(config, store)))
    return factories


def run_app(
    config: Config,
    *,
    environ: Mapping[str, str] | None = None,
    options: RuntimeOptions | None = None,
    only: Sequence[str] = (),
) -> int:
    """Run the daemon until SIGTERM/SIGINT; returns the exit code. Raises SecretError / StoreLockedError early."""
    key = load_api_key(config.databento, dict(environ) if environ is not None else None)
    protect_secrets(config, key)
    with Store.open(config.storage.arctic_uri, writer=True) as store:
        factories = [f for f in pipeline_factories(config, store, key) if not only or f[0] in only]
        run = partial(run_daemon, config, factories, fatal=(LeaseLostError,), options=options, environ=environ)
        return anyio.run(run)
