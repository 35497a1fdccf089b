"""`hydra-daemon` command line: run, demo, sim, check-config, backfill, export, health.

Each command imports what it needs when it runs, so `health` and `--help` answer without loading ArcticDB.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from hydra_daemon.config import Config, ConfigError, load_config
from hydra_daemon.redaction import redact_text, register_uri_secrets

_USER_ERRORS = (
    ("hydra_daemon.secrets", "SecretError"),
    ("hydra_daemon.store.lease", "StoreLockedError"),
    ("hydra_daemon.runtime.health", "HealthSocketError"),
)
"""Errors that are the operator's to fix: printed as one line, exit 1. Their modules are loaded once raised."""


def _is_user_error(exc: Exception) -> bool:
    classes = [getattr(sys.modules.get(module), name, None) for module, name in _USER_ERRORS]
    return any(isinstance(cls, type) and isinstance(exc, cls) for cls in classes)


def _check_config(args: argparse.Namespace) -> int:
    from hydra_daemon.config_view import render_config

    print(render_config(load_config(Path(args.config))))
    return 0


def _run(args: argparse.Namespace) -> int:
    from hydra_daemon.logging_setup import configure_logging
    from hydra_daemon.runtime.app import run_app

    configure_logging()
    return run_app(load_config(Path(args.config)))


def _demo(args: argparse.Namespace) -> int:
    from hydra_daemon.demo import run_demo

    return run_demo(seconds=args.seconds, state_dir=Path(args.state_dir) if args.state_dir else None)


def _sim(args: argparse.Namespace) -> int:
    from hydra_daemon.logging_setup import configure_logging
    from hydra_daemon.sim.command import configure, run

    parser = argparse.ArgumentParser(prog="hydra-daemon sim", description="Run the simulated venue until interrupted.")
    configure(parser)
    sim_args = parser.parse_args(args.rest)
    configure_logging()
    return run(sim_args)


def _health(args: argparse.Namespace) -> int:
    from hydra_daemon.runtime.health_client import DEFAULT_SOCKET, health_command

    return health_command(Path(args.socket) if args.socket else DEFAULT_SOCKET)


def _backfill_futures(args: argparse.Namespace) -> int:
    from hydra_daemon.futures.backfill_cli import backfill_futures_command

    return backfill_futures_command(_config(args), args.market, _utc_day(args.start), _utc_day(args.end))


def _backfill_cot(args: argparse.Namespace) -> int:
    from hydra_daemon.cot.backfill_cli import backfill_cot_command

    return backfill_cot_command(_config(args), args.start_year, args.end_year)


def _export(args: argparse.Namespace) -> int:
    from hydra_daemon.store.lake import export_from_store

    config = _config(args)
    if args.end < args.start:
        print(f"error: --end {args.end} is before --start {args.start}", file=sys.stderr)
        return 1
    try:
        paths = export_from_store(
            config.storage.arctic_uri, args.library, args.symbol, args.start, args.end, config.storage.lake_dir
        )
    except LookupError as exc:  # no such library or symbol in the store
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    print(f"{len(paths)} partition(s) published under {config.storage.lake_dir}", file=sys.stderr)
    return 0


def _config(args: argparse.Namespace) -> Config:
    """The command's config; logs go to stderr (stdout carries the command's output), store credentials masked."""
    from hydra_daemon.logging_setup import configure_logging

    config = load_config(Path(args.config))
    configure_logging()
    register_uri_secrets(config.storage.arctic_uri)
    return config


def _utc_day(value: date) -> datetime:
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _year(text: str) -> int:
    """A report year: disaggregated COT files exist from 2006."""
    if not text.strip().isascii() or not text.strip().isdigit() or not 2006 <= int(text) <= 2100:
        raise argparse.ArgumentTypeError(f"expected a year from 2006 to 2100, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"expected a number of seconds in (0, 86400], got {text!r}")
    return value


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="path to config.toml")


def _add_backfill(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backfill = sub.add_parser("backfill", help="backfill history into the store (refuses while a daemon writes)")
    kinds = backfill.add_subparsers(dest="kind", required=True)
    futures = kinds.add_parser("futures", help="futures definitions and bars from Databento Historical")
    _add_config(futures)
    futures.add_argument("--market", required=True, help="market name from the config, e.g. HE")
    futures.add_argument("--start", required=True, type=_day, help="first day (UTC), YYYY-MM-DD")
    futures.add_argument("--end", required=True, type=_day, help="end day (UTC, exclusive), YYYY-MM-DD")
    futures.set_defaults(handler=_backfill_futures)
    cot = kinds.add_parser("cot", help="CFTC disaggregated futures-only reports from the yearly files")
    _add_config(cot)
    cot.add_argument("--start-year", required=True, type=_year)
    cot.add_argument("--end-year", required=True, type=_year)
    cot.set_defaults(handler=_backfill_cot)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="hydra-daemon", description="Bitemporal capture of CME data and CFTC COT.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon (systemd Type=notify)")
    _add_config(run)
    run.set_defaults(handler=_run)

    demo = sub.add_parser("demo", help="simulated venue + daemon on loopback, then a report (no key, no network)")
    demo.add_argument("--seconds", type=_seconds, default=60.0, help="how long to capture (wall seconds)")
    demo.add_argument("--state-dir", help="keep the demo's store here (default: a temporary directory)")
    demo.set_defaults(handler=_demo)

    sim = sub.add_parser("sim", add_help=False, help="run the simulated Databento + CFTC venue (see sim --help)")
    sim.set_defaults(handler=_sim, takes_rest=True)

    check = sub.add_parser("check-config", help="validate a config file and print the effective config")
    check.add_argument("config", help="path to config.toml")
    check.set_defaults(handler=_check_config)

    _add_backfill(sub)

    export = sub.add_parser("export", help="export a symbol's days to the Parquet lake")
    _add_config(export)
    export.add_argument("--library", required=True, help="futures, options, cot or features")
    export.add_argument("--symbol", required=True, help="e.g. HE.ohlcv-1d")
    export.add_argument("--start", required=True, type=_day, help="first day, YYYY-MM-DD")
    export.add_argument("--end", required=True, type=_day, help="last day (inclusive), YYYY-MM-DD")
    export.set_defaults(handler=_export)

    health = sub.add_parser(
        "health", help="ask a running daemon how it is doing (exit 0 ok or closed, 1 degraded, 2 failed or no answer)"
    )
    health.add_argument("--socket", help="health socket path (default /run/hydra-daemon/health.sock)")
    health.set_defaults(handler=_health)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hydra-daemon` console script."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "takes_rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
