"""`hydra-daemon backfill futures`: a Historical backfill of one market's futures with a rich progress bar."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hydra_daemon.config import Config
from hydra_daemon.futures.backfill import backfill_futures
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
    console.print(f"{market}: {stored} new rows stored for [{start.date()}, {end.date()})")
    return 0
