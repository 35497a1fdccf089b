"""`hydra-daemon backfill futures`: a Historical backfill of one market's futures with a rich progress bar, or with
`--dry-run` what it would cost."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hydra_daemon.config import Config
from hydra_daemon.databento.cost_report import print_cost_report
from hydra_daemon.futures.backfill import backfill_futures, plan_backfill, quote_backfill
from hydra_daemon.lake.exporter import export_after_backfill
from hydra_daemon.store.arctic import Store


def backfill_futures_command(
    config: Config, market: str, start: datetime, end: datetime, console: Console | None = None
) -> int:
    """Backfill `market` for [start, end) into the futures library; prints the rows stored; returns an exit code.

    Opens the store as writer, so it refuses (StoreLockedError) while the daemon is running.
    """
    console = console or Console()
    config.market(market)
    columns = (TextColumn(f"futures backfill {market}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Store.open(config.storage.arctic_uri, writer=True) as store, Progress(*columns, console=console) as bar:
        task = bar.add_task("", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        stored = backfill_futures(config, store, market, start, end, progress)
        exported = export_after_backfill(config, store)
    console.print(f"{market}: {stored} new rows stored for [{start.date()}, {end.date()})")
    console.print(f"lake: {len(exported)} partition(s) published under {config.storage.lake_dir}")
    return 0


def quote_futures_command(
    config: Config, market: str, start: datetime, end: datetime, console: Console | None = None
) -> int:
    """Print what backfilling `market` for [start, end) would cost (per schema and in total) and whether the cost
    guard would allow it; downloads nothing and needs no store. Returns 0."""
    plan = plan_backfill(config, market, start, end)
    quotes = quote_backfill(plan, plan.source.client())
    title = f"futures backfill {market} [{start.date()}, {end.date()}): Databento Historical cost"
    print_cost_report(console or Console(), title, quotes, plan.source.guard)
    return 0
