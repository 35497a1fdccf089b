"""Test-only entry point: `python tests/runtime/venue_daemon.py WORKDIR --start ISO [--key KEY] [--replay-window S]
[--max-cost USD] [--history S]` runs the simulated venue on a thread and the real daemon (`run_app`, real pipelines
and clients) against it on the venue's clock, as the demo does. The first stdout line is the venue's info as JSON
(its `historical_url` takes `POST /sim/faults`); the health socket is `WORKDIR/health.sock`. Health thresholds are
scaled to the venue's speed (`HEALTH_WALL_S`). `--replay-window` (sim seconds) is the venue's Live replay window and
the daemon's `replay_window_s` both; `--history` lets the venue trade that many wall seconds before the daemon
starts, so Historical has data older than the replay window.

`--venue JSON` (see `external_venue`) points the daemon at a venue running elsewhere (the test process, so it and its
ground truth outlive daemon restarts) and keeps that venue's clock; `--arctic-uri` sets the store (default LMDB under
WORKDIR/state); `--restart-max-s` caps the pipelines' restart backoff.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra_daemon.config import parse_config
from hydra_daemon.logging_setup import configure_logging
from hydra_daemon.runtime.app import run_app
from hydra_daemon.runtime.daemon import RuntimeOptions
from hydra_daemon.runtime.supervisor import RestartPolicy
from hydra_daemon.sim.clock import SimClock
from hydra_daemon.sim.config import LEAN_HOGS, MarketConfig
from hydra_daemon.sim.venue import VenueConfig, VenueInfo, VenueThread

SPEED = 60.0
"""One simulated minute per wall second: minute bars every wall second, a weekend lasts 48 wall minutes."""
HEALTH_WALL_S = 20.0
"""stale_after_s in wall seconds of the venue's clock."""


def venue_config(start: datetime, replay_window_s: float, record_path: Path | None = None) -> VenueConfig:
    """The venue every daemon of these tests runs against: lean hogs at `SPEED`."""
    market = MarketConfig(seed=5, products=(LEAN_HOGS,), start=start, speed=SPEED, base_rate=100.0)
    return VenueConfig(market=market, replay_window_s=replay_window_s, record_path=record_path)


def external_venue(venue: VenueThread) -> str:
    """The `--venue` argument for a daemon against `venue` (running in the caller's process): its connection info and
    its clock (CLOCK_MONOTONIC is the same in every process, so the daemon's copy keeps the venue's time)."""
    clock = venue.venue.clock
    assert clock is not None
    timing = {"clock_start": clock.start.isoformat(), "clock_speed": clock.speed, "clock_wall_start": clock._wall_start}
    return json.dumps({**venue.info.as_dict(), **timing})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--start", type=datetime.fromisoformat, required=True)
    parser.add_argument("--key", help="API key the daemon uses (default: the venue's own)")
    parser.add_argument("--replay-window", type=int, default=23 * 3600, help="sim seconds, venue and daemon")
    parser.add_argument("--max-cost", type=float, default=10.0, help="[databento] max_historical_cost_usd")
    parser.add_argument("--history", type=float, default=0.0, help="wall seconds the venue runs before the daemon")
    parser.add_argument("--venue", type=json.loads, help="a venue running elsewhere: external_venue()")
    parser.add_argument("--arctic-uri", help="[storage] arctic_uri (default: LMDB under WORKDIR/state)")
    parser.add_argument("--restart-max-s", type=float, default=300.0, help="cap of the pipelines' restart backoff")
    args = parser.parse_args(argv)
    configure_logging(json=True)
    own = None if args.venue else VenueThread(venue_config(args.start, args.replay_window))
    with own or nullcontext():
        info, clock = _venue(own, args.venue)
        print(json.dumps(info.as_dict()), flush=True)
        time.sleep(args.history)
        storage: dict[str, Any] = {"flush_interval_s": 0.25}
        if args.arctic_uri:
            storage["arctic_uri"] = args.arctic_uri
        config = parse_config(
            {
                "state_dir": str(args.workdir / "state"),
                "health_socket": str(args.workdir / "health.sock"),
                "storage": storage,
                "databento": {
                    "live_gateway": info.live_host,
                    "live_port": info.live_port,
                    "historical_url": info.historical_url,
                    "futures_schemas": ["ohlcv-1d", "ohlcv-1m"],
                    "heartbeat_interval_s": 2,
                    "replay_window_s": args.replay_window,
                    "max_historical_cost_usd": args.max_cost,
                },
                "cot": {"enabled": False},
                "health": {"stale_after_s": HEALTH_WALL_S * SPEED},
                # No `hours`: the simulated venue trades HE round the clock on weekdays, not CME's 08:30-13:05.
                "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
            }
        )
        restart = RestartPolicy(max_s=args.restart_max_s)
        options = RuntimeOptions(restart=restart, ready_timeout_s=10.0, monitor_interval_s=0.1)
        environ = {"DATABENTO_API_KEY": args.key or info.api_key}
        return run_app(config, environ=environ, options=options, clock=clock)


def _venue(own: VenueThread | None, external: dict[str, Any] | None) -> tuple[VenueInfo, SimClock]:
    if own is not None:
        assert own.venue.clock is not None
        return own.info, own.venue.clock
    assert external is not None
    start, speed, wall = (external.pop(k) for k in ("clock_start", "clock_speed", "clock_wall_start"))
    return VenueInfo(**external), SimClock(datetime.fromisoformat(start), speed, wall)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
