"""`hydra-daemon backfill options`: a Historical backfill of one market's options with a progress bar (requests,
records, ETA), then the lake export of what it wrote."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hydra_daemon.config import Config
from hydra_daemon.lake.exporter import export_after_backfill
from hydra_daemon.options.backfill import backfill_options
from hydra_daemon.store.arctic import Store


def backfill_options_command(
    config: Config, market: str, start: datetime, end: datetime, console: Console | None = None
) -> int:
    """Backfill `market`'s options for [start, end) into the options and features libraries; prints the records
    stored and the lake partitions published; returns an exit code.

    Opens the store as writer, so it refuses (StoreLockedError) while the daemon is running."""
    console = console or Console()
    config.market(market)
    columns = (
        TextColumn(f"options backfill {market}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("requests, {task.fields[records]:,} records"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Store.open(config.storage.arctic_uri, writer=True) as store, Progress(*columns, console=console) as bar:
        task = bar.add_task("", total=None, records=0)

        def progress(done: int, total: int, records: int) -> None:
            bar.update(task, completed=done, total=total, records=records)

        stored = backfill_options(config, store, market, start, end, progress)
        exported = export_after_backfill(config, store)
    console.print(f"{market}: {stored} new option records stored for [{start.date()}, {end.date()})")
    console.print(f"lake: {len(exported)} partition(s) published under {config.storage.lake_dir}")
    return 0
