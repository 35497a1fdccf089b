"""Test-only entry point: `python tests/runtime/venue_daemon.py WORKDIR --start ISO [--key KEY] [--replay-window S]
[--max-cost USD] [--history S]` runs the simulated venue on a thread and the real daemon (`run_app`, real pipelines
and clients) against it on the venue's clock, as the demo does. The first stdout line is the venue's info as JSON
(its `historical_url` takes `POST /sim/faults`); the health socket is `WORKDIR/health.sock`. Health thresholds are
scaled to the venue's speed (`HEALTH_WALL_S`). `--replay-window` (sim seconds) is the venue's Live replay window and
the daemon's `replay_window_s` both; `--history` lets the venue trade that many wall seconds before the daemon
starts, so Historical has data older than the replay window.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from hydra_daemon.config import parse_config
from hydra_daemon.logging_setup import configure_logging
from hydra_daemon.runtime.app import run_app
from hydra_daemon.runtime.daemon import RuntimeOptions
from hydra_daemon.sim.config import LEAN_HOGS, MarketConfig
from hydra_daemon.sim.venue import VenueConfig, VenueThread

SPEED = 60.0
"""One simulated minute per wall second: minute bars every wall second, a weekend lasts 48 wall minutes."""
HEALTH_WALL_S = 20.0
"""stale_after_s in wall seconds of the venue's clock."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--start", type=datetime.fromisoformat, required=True)
    parser.add_argument("--key", help="API key the daemon uses (default: the venue's own)")
    parser.add_argument("--replay-window", type=int, default=23 * 3600, help="sim seconds, venue and daemon")
    parser.add_argument("--max-cost", type=float, default=10.0, help="[databento] max_historical_cost_usd")
    parser.add_argument("--history", type=float, default=0.0, help="wall seconds the venue runs before the daemon")
    args = parser.parse_args(argv)
    configure_logging(json=True)
    market = MarketConfig(seed=5, products=(LEAN_HOGS,), start=args.start, speed=SPEED, base_rate=100.0)
    with VenueThread(VenueConfig(market=market, replay_window_s=args.replay_window)) as venue:
        info = venue.info
        print(json.dumps(info.as_dict()), flush=True)
        time.sleep(args.history)
        config = parse_config(
            {
                "state_dir": str(args.workdir / "state"),
                "health_socket": str(args.workdir / "health.sock"),
                "storage": {"flush_interval_s": 0.25},
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
                "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
            }
        )
        clock = venue.venue.clock
        assert clock is not None
        options = RuntimeOptions(ready_timeout_s=10.0, monitor_interval_s=0.1)
        environ = {"DATABENTO_API_KEY": args.key or info.api_key}
        return run_app(config, environ=environ, options=options, clock=clock)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
