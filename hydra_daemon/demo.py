"""`hydra-daemon demo`: the simulated venue and the real daemon on loopback, then a report of what was captured.

No API key and no network: the venue (`hydra_daemon.sim`) runs in this process on its own thread with an
accelerated clock (one trading day every few seconds), the daemon runs its real pipelines against it with the
real `databento` clients, a COT correction is published mid-run, and SIGTERM ends the capture after `seconds`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

from rich.console import Console

from hydra_daemon.config import Config, parse_config
from hydra_daemon.demo_report import print_report
from hydra_daemon.logging_setup import configure_logging
from hydra_daemon.options.implied_vol import RATE as IV_RATE
from hydra_daemon.runtime.app import run_app
from hydra_daemon.runtime.daemon import RuntimeOptions
from hydra_daemon.runtime.health_client import query_health
from hydra_daemon.sim.config import LEAN_HOGS, MarketConfig
from hydra_daemon.sim.venue import Venue, VenueConfig, VenueInfo, VenueThread
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.uri import default_lmdb_uri

DEMO_START = datetime(2026, 2, 2, tzinfo=UTC)
"""A Monday: COT for as_of Tue Feb 3 is released Fri Feb 6 20:30 UTC, as_of Feb 10 on Fri Feb 13."""
DEMO_SPEED = 86_400 / 3.5
"""One simulated day every 3.5 wall seconds: a 60 s demo covers about 17 days and two COT releases."""
REPLAY_WINDOW_S = 30 * 86_400
"""Databento replays the last 24 h; at the demo's speed that is 3.5 wall seconds, less than the daemon takes to start,
so the venue replays its whole (short) history and the report can compare the store with all of it."""
HEALTH_WALL_S = 5.0
"""Health thresholds are in data-clock seconds: the demo's are a few wall seconds of its accelerated time."""
LEAN_HOGS_CODE = "054642"
REVISED_AS_OF = date(2026, 2, 3)
REVISION_PUBLISHED = datetime(2026, 2, 10, 12, tzinfo=UTC)
MOVED_CONTRACTS = 1_500


# The venue prices options with the daemon's implied-vol rate, so the report's IVs equal the venue's input vols.


def run_demo(seconds: float = 60.0, state_dir: Path | None = None) -> int:
    """Run venue + daemon for `seconds` wall seconds, print the report; returns the daemon's exit code."""
    console = Console()
    configure_logging(json=False, level=30)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    with _state_dir(state_dir) as root:
        venue_config = VenueConfig(
            market=MarketConfig(
                seed=7, products=(LEAN_HOGS,), start=DEMO_START, speed=DEMO_SPEED, base_rate=200.0, rate=IV_RATE
            ),
            record_path=root / "venue-ground-truth.dbn",
            replay_window_s=REPLAY_WINDOW_S,
            history_s=REPLAY_WINDOW_S,
        )
        with VenueThread(venue_config) as venue:
            _publish_revision(venue)
            config = demo_config(root, venue.info)
            console.print(
                f"[bold]hydra-daemon demo[/]: venue on {venue.info.live_host}:{venue.info.live_port}, "
                f"store {config.storage.arctic_uri}, capturing for {seconds:.0f} s"
            )
            stop = _stop_after(seconds, config, console)
            clock = venue.venue.clock
            assert clock is not None
            env = {"DATABENTO_API_KEY": venue.info.api_key}
            options = RuntimeOptions(ready_timeout_s=30.0)
            # One ArcticDB instance over the LMDB path for the whole demo: the daemon and the report share it, so no
            # leftover handle of the daemon's can make the report open the path a second time (an ArcticDB warning).
            with Store.open(config.storage.arctic_uri, writer=False, quiet=True):
                code = run_app(config, environ=env, options=options, clock=clock)
                stop.set()
                print_report(console, config, venue)
    return code


def demo_config(root: Path, info: VenueInfo) -> Config:
    """A daemon config pointed at the venue, with event-time cadences scaled to the accelerated clock.

    `replay_window_s` is set after validation: the config caps it at Databento's 24 h, but the demo's venue replays
    its whole accelerated history (see `REPLAY_WINDOW_S`).
    """
    config = parse_config(
        {
            "state_dir": str(root),
            "health_socket": str(root / "health.sock"),
            "storage": {"arctic_uri": default_lmdb_uri(root), "flush_interval_s": 0.25},
            "databento": {
                "live_gateway": info.live_host,
                "live_port": info.live_port,
                "historical_url": info.historical_url,
                "futures_schemas": ["ohlcv-1d", "ohlcv-1m"],
                "heartbeat_interval_s": 5,
            },
            "options": {"snapshot_interval_s": 6 * 3600},
            "cot": {"base_url": info.cftc_url, "timeout_s": 10, "poll_interval_s": 600},
            "health": {"stale_after_s": HEALTH_WALL_S * DEMO_SPEED, "cot_grace_s": HEALTH_WALL_S * DEMO_SPEED},
            # A day is exported half a simulated day after it completes: rows still in a flush (0.25 wall s, ~2 h of
            # simulated time) or in the shutdown snapshot must land first, as export_delay_s allows for in production.
            "lake": {"export_delay_s": 12 * 3600},
            # No `hours`: the simulated venue trades HE round the clock on weekdays, not CME's 08:30-13:05.
            "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": LEAN_HOGS_CODE}],
        }
    )
    return replace(config, databento=replace(config.databento, replay_window_s=REPLAY_WINDOW_S - 3600))


def _publish_revision(venue: VenueThread) -> None:
    """Schedule a CFTC correction of the Feb 3 lean hogs report: managed-money longs move to non-reportable."""

    def revise(v: Venue) -> None:
        v.cftc.files.reclassify_managed_money(LEAN_HOGS_CODE, REVISED_AS_OF, MOVED_CONTRACTS, REVISION_PUBLISHED)

    venue.call(revise)


def _stop_after(seconds: float, config: Config, console: Console) -> threading.Event:
    """Once the daemon answers on its health socket, print a health line every 5 s for `seconds`, then SIGTERM this
    process (the daemon's real shutdown path). Counting from the first answer, not from the start, gives the capture
    the same length however long start-up takes on a busy machine."""
    done = threading.Event()

    def watch() -> None:
        while not _answers(config) and not done.wait(0.2):
            pass
        deadline = seconds
        while deadline > 0 and not done.wait(min(5.0, deadline)):
            deadline -= 5.0
            _print_health(config, console)
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="demo-timer", daemon=True).start()
    return done


def _answers(config: Config) -> bool:
    try:
        query_health(config.health_socket, timeout_s=2.0)
    except OSError:
        return False
    return True


def _print_health(config: Config, console: Console) -> None:
    try:
        health = query_health(config.health_socket, timeout_s=2.0)
    except OSError:
        return
    parts = [f"{name}: {p.get('state')} {p.get('records', 0)} rows" for name, p in health.get("pipelines", {}).items()]
    console.print(f"  health {health.get('status')}: " + "; ".join(parts))


@contextlib.contextmanager
def _state_dir(state_dir: Path | None) -> Iterator[Path]:
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        yield state_dir.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="hydra-demo-") as tmp:
        yield Path(tmp)
