"""`hydra-daemon` command line: run, demo, sim, check-config, backfill, export, health.

Each command imports what it needs when it runs, so `health` and `--help` answer without loading ArcticDB, and
configures logging before importing it (see `logging_setup`). Every mistake that is the user's to fix is one line
`error: ...` on stderr and exit 1, never a traceback. Day ranges are `--start` inclusive, `--end` exclusive
(as Databento's), in every command.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path

from hydra_daemon.config import Config, load_config
from hydra_daemon.errors import UserError
from hydra_daemon.redaction import redact_text, register_uri_secrets


class CommandError(UserError):
    """A mistake in the command's arguments or environment: printed as one line, exit 1."""


def _check_config(args: argparse.Namespace) -> int:
    from hydra_daemon.config_view import render_config

    print(render_config(load_config(Path(args.config))))
    return 0


def _run(args: argparse.Namespace) -> int:
    from hydra_daemon.store.resident import bound_heap

    bound_heap()  # first: ArcticDB's and polars' threads, started by the imports below, would each get an arena
    config = _config(args, logging.INFO)
    _require_writable_dir(config.state_dir)
    _require_socket_dir(config.health_socket)
    from hydra_daemon.runtime.app import run_app

    return run_app(config)


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
    _require_range(args.start, args.end)
    config = _config(args)
    start, end = _utc_day(args.start), _utc_day(args.end)
    if args.dry_run:
        from hydra_daemon.futures.backfill_cli import quote_futures_command

        return quote_futures_command(config, args.market, start, end)
    _require_writable_dir(config.state_dir)
    from hydra_daemon.futures.backfill_cli import backfill_futures_command

    return backfill_futures_command(config, args.market, start, end)


def _backfill_options(args: argparse.Namespace) -> int:
    _require_range(args.start, args.end)
    config = _config(args)
    if args.dry_run:
        return _quote_options(config, args.market, _utc_day(args.start), _utc_day(args.end))
    _require_writable_dir(config.state_dir)
    from hydra_daemon.options.backfill_cli import backfill_options_command

    return backfill_options_command(config, args.market, _utc_day(args.start), _utc_day(args.end))


def _quote_options(config: Config, market: str, start: datetime, end: datetime) -> int:
    from rich.console import Console

    from hydra_daemon.databento.cost_report import print_cost_report
    from hydra_daemon.options.backfill import plan_options_backfill, quote_options_backfill

    plan = plan_options_backfill(config, market, start, end)
    quotes = quote_options_backfill(plan, plan.source.client())
    title = f"options backfill {market} [{start.date()}, {end.date()}) with its warm-up: Databento Historical cost"
    print_cost_report(Console(), title, quotes, plan.source.guard)
    return 0


def _backfill_cot(args: argparse.Namespace) -> int:
    if args.end_year < args.start_year:
        raise CommandError(f"--end-year {args.end_year} is before --start-year {args.start_year}")
    config = _config(args)
    _require_writable_dir(config.state_dir)
    from hydra_daemon.cot.backfill_cli import backfill_cot_command

    return backfill_cot_command(config, args.start_year, args.end_year)


def _export(args: argparse.Namespace) -> int:
    _require_range(args.start, args.end)
    config = _config(args)
    from hydra_daemon.store.lake import export_from_store

    try:
        paths = export_from_store(
            config.storage.arctic_uri, args.library, args.symbol, args.start, args.end, config.storage.lake_dir
        )
    except (LookupError, ValueError) as exc:  # no such library or symbol; a name that cannot be a lake directory
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    print(f"{len(paths)} partition(s) published under {config.storage.lake_dir}", file=sys.stderr)
    return 0


def _config(args: argparse.Namespace, level: int = logging.WARNING) -> Config:
    """The command's config; logs go to stderr (stdout carries the command's output), store credentials masked.
    One-shot commands log warnings and errors only: what they did is their output."""
    from hydra_daemon.logging_setup import configure_logging

    config = load_config(Path(args.config))
    configure_logging(level=level)
    register_uri_secrets(config.storage.arctic_uri)
    return config


EARLIEST_DAY, LATEST_DAY = date(1970, 1, 1), date(2262, 4, 11)
"""Days a nanosecond UTC timestamp (Databento's, pandas') can hold."""


def _require_range(start: date, end: date) -> None:
    for name, day in (("--start", start), ("--end", end)):
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            raise CommandError(f"{name} {day} is outside the days a nanosecond timestamp holds ({EARLIEST_DAY} to "
                               f"{LATEST_DAY})")  # fmt: skip
    if end <= start:
        raise CommandError(
            f"--end {end} must be after --start {start} (--end is exclusive: the first day not included)"
        )


def _require_writable_dir(path: Path) -> None:
    """`state_dir` exists (created if missing) and this user can write there; CommandError saying so otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"state_dir {path} cannot be created: {exc.strerror}; create it for this user or set "
                           "state_dir elsewhere") from None  # fmt: skip
    if not os.access(path, os.W_OK | os.X_OK):
        raise CommandError(f"state_dir {path} is not writable by this user; fix its permissions or set state_dir "
                           "elsewhere")  # fmt: skip


def _require_socket_dir(socket: Path) -> None:
    """The health socket's directory must exist: the daemon does not create directories under /run on its own."""
    if not socket.parent.is_dir():
        raise CommandError(
            f"health_socket directory {socket.parent} does not exist; create it (under systemd, "
            f"RuntimeDirectory=hydra-daemon does) or set health_socket elsewhere"
        )


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


def _add_dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="print what the requests would cost (Databento metadata) and exit"
    )


def _add_days(parser: argparse.ArgumentParser) -> None:
    """--start/--end UTC days with Databento's convention: start inclusive, end exclusive."""
    parser.add_argument("--start", required=True, type=_day, help="first UTC day, included (YYYY-MM-DD)")
    parser.add_argument("--end", required=True, type=_day, help="UTC day the range ends before, excluded (YYYY-MM-DD)")


def _add_backfill(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backfill = sub.add_parser("backfill", help="backfill history into the store (refuses while a daemon writes)")
    kinds = backfill.add_subparsers(dest="kind", required=True)
    futures = kinds.add_parser("futures", help="futures definitions and bars from Databento Historical")
    _add_config(futures)
    futures.add_argument("--market", required=True, help="market name from the config, e.g. HE")
    _add_days(futures)
    _add_dry_run(futures)
    futures.set_defaults(handler=_backfill_futures)
    options = kinds.add_parser(
        "options", help="options definitions, quotes (mbp-1) and statistics from Databento Historical, with chains"
    )
    _add_config(options)
    options.add_argument("--market", required=True, help="market name from the config, e.g. HE")
    _add_days(options)
    _add_dry_run(options)
    options.set_defaults(handler=_backfill_options)
    cot = kinds.add_parser(
        "cot", help="CFTC disaggregated futures-only reports from the yearly files (free: no cost guard)"
    )
    _add_config(cot)
    cot.add_argument("--start-year", required=True, type=_year, help="first report year (inclusive)")
    cot.add_argument("--end-year", required=True, type=_year, help="last report year (inclusive)")
    cot.set_defaults(handler=_backfill_cot)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="hydra-daemon",
        description="Bitemporal capture of CME data and CFTC COT. Day ranges: --start inclusive, --end exclusive.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('hydra-daemon')}")
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
    _add_days(export)
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
    except UserError as exc:  # the operator's to fix: one line, no traceback
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
