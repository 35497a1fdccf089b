"""`hydra-daemon sim`: run the simulated Databento (+ CFTC) venue until SIGINT/SIGTERM.

With `--json` the first stdout line is one JSON object: live_host, live_port, historical_url, cftc_url, dataset,
api_key (ports 0 = free ports; the JSON has the real ones). Logs go to stderr (the caller configures logging).
The real `databento.Historical` reaches `historical_url` through `hydra_daemon.databento.historical_client` (an endpoint
override: the client forces https on `gateway=`); CFTC zips are under `{cftc_url}/files/dea/history/`.

Faults are switched three ways, all ending in `Venue.apply_fault(name, value)`:
- at run time: `POST /sim/faults` on the HTTP port, form fields `name` and `value`
  (422 with a JSON `detail` for an unknown name or a bad value);
- at start: the flags below, or `--fault-at 0:NAME[=VALUE]` for any name;
- on a timer: `--fault-at SECONDS:NAME[=VALUE]` (wall seconds after start; repeatable).

Fault names (`/sim/faults` name=value):
  Live gateway, one-shot on every open session:
    close                     graceful close (FIN); the client's stream just ends
    reset                     TCP reset (RST)
    error                     ErrorMsg "Simulated gateway error", then close
    corrupt                   garbage bytes in the DBN stream
    short_record              an MBP-1 record declaring 16 bytes (the DBN library panics on it)
    down=SECONDS              reset every session and refuse connections for SECONDS (default 5)
    invalid_bar[=RAW_SYMBOL]  an OHLCV-1m bar with high < low for a future (default the first listed), on Live
                              and Historical but not in the --record ground truth
  Live gateway, persistent (value 1 = on, 0 = off):
    stall=1|0                 send nothing at all, not even heartbeats (the client's watchdog trips)  --fault-stall
    pause=1|0                 send heartbeats only                                                    --fault-pause
    slow=BYTES_PER_S          throttle every session (0 = off)                                        --fault-slow
    auth_failure=1|0          reject every login with success=0|error=Authentication failed.    --fault-auth-failure
  Historical API:
    http_fail=STATUS[:COUNT]  answer STATUS with a JSON detail (COUNT times; default until cleared) --fault-http-fail
    http_delay=SECONDS        delay every answer (client timeouts; 0 = off)                      --fault-http-delay
  CFTC files (COUNT = how many answers it affects; default until cleared):
    cftc_fail=STATUS[:COUNT]  answer STATUS (429/503 carry Retry-After: 1)                        --fault-cftc-fail
    cftc_slow=SECONDS[:COUNT] stall before answering (client timeouts)                            --fault-cftc-slow
    cftc_truncated[=COUNT]    the first half of the zip                               --fault-cftc-zip truncated
    cftc_corrupt[=COUNT]      a zip whose compressed data is garbled (CRC / inflate error)  --fault-cftc-zip corrupt
    cftc_zip_bomb[=BYTES[:COUNT]]  a ~1/1000-size zip inflating to BYTES (default 1 GiB)  --fault-cftc-zip zip_bomb
    cftc_wrong_member[=MEMBER[:COUNT]]  the right data under another member name  --fault-cftc-zip wrong_member
    cftc_html[=COUNT]         200 with an HTML page instead of the zip                     --fault-cftc-zip html
    cftc_revision=CODE:YYYY-MM-DD[:CONTRACTS]  not a fault: publish now (sim time) a correction of that released
                              week, CONTRACTS (default 100) Old-crop managed-money longs become non-reportable
  All of them:
    clear                     every fault above off
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from hydra_daemon.sim.config import DEFAULT_API_KEY, PRODUCTS, MarketConfig
from hydra_daemon.sim.venue import FAULT_NAMES, Venue, VenueConfig

log = structlog.get_logger()

CFTC_ZIP_FAULTS = ("truncated", "corrupt", "zip_bomb", "wrong_member", "html")


@dataclass(frozen=True)
class TimedFault:
    """A fault applied `after_s` wall seconds after the venue starts."""

    after_s: float
    name: str
    value: str


def parse_timed_fault(text: str) -> TimedFault:
    """`"12.5:down=5"` -> TimedFault(12.5, "down", "5")."""
    after, sep, rest = text.partition(":")
    name, _, value = rest.partition("=")
    try:
        after_s = float(after)
    except ValueError:
        after_s = -1.0
    if not sep or after_s < 0 or name not in FAULT_NAMES:
        raise argparse.ArgumentTypeError(
            f"--fault-at wants SECONDS:NAME[=VALUE] with NAME in {', '.join(FAULT_NAMES)}; got {text!r}"
        )
    return TimedFault(after_s, name, value)


def _utc(text: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--start wants an ISO 8601 instant, got {text!r}") from None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _roots(text: str) -> tuple[str, ...]:
    roots = tuple(r.strip().upper() for r in text.split(",") if r.strip())
    unknown = [r for r in roots if r not in PRODUCTS]
    if not roots or unknown:
        raise argparse.ArgumentTypeError(f"--roots: choose from {', '.join(PRODUCTS)}; got {text!r}")
    return roots


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `sim` options to `parser`; its help ends with the fault list."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__[__doc__.index("Faults are switched") :] if __doc__ else None
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--live-port", type=int, default=13000, help="Live gateway TCP port (0 = pick a free one)")
    parser.add_argument("--http-port", type=int, default=8080, help="Historical/CFTC/control HTTP port (0 = free)")
    parser.add_argument("--seed", type=int, default=7, help="market seed: same seed, same records")
    parser.add_argument("--speed", type=float, default=1.0, help="sim seconds per wall second (1440 = a day a minute)")
    parser.add_argument("--start", type=_utc, help="sim start instant, ISO 8601 UTC (default: now)")
    parser.add_argument("--roots", type=_roots, default=("HE",), help=f"futures roots, from {', '.join(PRODUCTS)}")
    parser.add_argument("--rate", type=float, default=50.0, help="market events per WALL second (default 50)")
    parser.add_argument("--burst-multiplier", type=float, default=1.0, help="rate multiple during bursts")
    parser.add_argument("--burst-duration", type=float, default=0.0, help="burst length, wall seconds")
    parser.add_argument("--burst-period", type=float, default=0.0, help="a burst starts every this many wall seconds")
    parser.add_argument("--replay-window", type=float, default=86_400.0, help="Live start= reach-back, sim seconds")
    parser.add_argument("--history", type=float, default=2 * 86_400.0, help="Historical look-back, sim seconds")
    parser.add_argument("--api-key", action="append", help="accepted API key (repeatable; default: a fixed test key)")
    parser.add_argument("--record", type=Path, help="write every emitted record to this DBN file (ground truth)")
    parser.add_argument("--json", action="store_true", help="print connection info as one JSON line first")
    faults = parser.add_argument_group("faults (also switchable at run time: POST /sim/faults name=...&value=...)")
    faults.add_argument("--fault-stall", action="store_true", help="Live sessions send nothing, not even heartbeats")
    faults.add_argument("--fault-pause", action="store_true", help="Live sessions send heartbeats only")
    faults.add_argument("--fault-slow", type=float, metavar="BYTES_PER_S", help="throttle every Live session")
    faults.add_argument("--fault-auth-failure", action="store_true", help="reject every Live login")
    faults.add_argument("--fault-http-fail", metavar="STATUS[:COUNT]", help="Historical answers STATUS (COUNT times)")
    faults.add_argument("--fault-http-delay", type=float, metavar="SECONDS", help="delay every Historical answer")
    faults.add_argument("--fault-cftc-fail", metavar="STATUS[:COUNT]", help="CFTC files answer STATUS (COUNT times)")
    faults.add_argument("--fault-cftc-slow", type=float, metavar="SECONDS", help="delay every CFTC file answer")
    faults.add_argument("--fault-cftc-zip", choices=CFTC_ZIP_FAULTS, help="serve every CFTC zip broken this way")
    faults.add_argument(
        "--fault-at",
        type=parse_timed_fault,
        action="append",
        default=[],
        metavar="SECONDS:NAME[=VALUE]",
        help=f"apply a fault after SECONDS (NAME: {', '.join(FAULT_NAMES)}; e.g. 10:reset, 20:down=5)",
    )


def venue_config(args: argparse.Namespace) -> VenueConfig:
    """The VenueConfig the parsed `args` describe."""
    start = args.start or datetime.now(UTC)
    market = MarketConfig(
        seed=args.seed,
        products=tuple(PRODUCTS[r] for r in args.roots),
        start=start,
        speed=args.speed,
        base_rate=args.rate,
        burst_multiplier=args.burst_multiplier,
        burst_duration_s=args.burst_duration,
        burst_period_s=args.burst_period,
    )
    return VenueConfig(
        market=market,
        api_keys=tuple(args.api_key or (DEFAULT_API_KEY,)),
        host=args.host,
        live_port=args.live_port,
        http_port=args.http_port,
        replay_window_s=args.replay_window,
        history_s=args.history,
        record_path=args.record,
    )


def initial_faults(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(name, value) faults to switch on at start, from the flags."""
    faults: list[tuple[str, str]] = []
    if args.fault_stall:
        faults.append(("stall", "1"))
    if args.fault_pause:
        faults.append(("pause", "1"))
    if args.fault_slow:
        faults.append(("slow", str(args.fault_slow)))
    if args.fault_auth_failure:
        faults.append(("auth_failure", "1"))
    if args.fault_http_fail:
        faults.append(("http_fail", args.fault_http_fail))
    if args.fault_http_delay:
        faults.append(("http_delay", str(args.fault_http_delay)))
    if args.fault_cftc_fail:
        faults.append(("cftc_fail", args.fault_cftc_fail))
    if args.fault_cftc_slow:
        faults.append(("cftc_slow", str(args.fault_cftc_slow)))
    if args.fault_cftc_zip:
        faults.append((f"cftc_{args.fault_cftc_zip}", ""))
    return faults


def run(args: argparse.Namespace) -> int:
    """Run the venue until SIGINT/SIGTERM; 0 on a clean stop."""
    try:
        config = venue_config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(config, args))


async def _serve(config: VenueConfig, args: argparse.Namespace) -> int:
    venue = Venue(config)
    try:
        await venue.start()
    except OSError as exc:
        print(f"error: cannot listen ({exc}); pick other ports with --live-port/--http-port (0 = any)", file=sys.stderr)
        return 1
    try:
        for name, value in initial_faults(args):
            venue.apply_fault(name, value)
    except ValueError as exc:
        await venue.stop()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = venue.info
    if args.json:
        sys.stdout.write(json.dumps(info.as_dict()) + "\n")
        sys.stdout.flush()
    log.info("sim_venue_started", live_port=info.live_port, historical_url=info.historical_url, speed=args.speed)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    timers = [loop.call_later(f.after_s, _apply_timed, venue, f) for f in args.fault_at]
    try:
        await stop.wait()
    finally:
        for timer in timers:
            timer.cancel()
        await venue.stop()
    log.info("sim_venue_stopped")
    return 0


def _apply_timed(venue: Venue, fault: TimedFault) -> None:
    try:
        venue.apply_fault(fault.name, fault.value)
    except ValueError as exc:
        log.error("sim_fault_rejected", fault=fault.name, value=fault.value, error=str(exc))
    else:
        log.info("sim_fault_applied", fault=fault.name, value=fault.value)
