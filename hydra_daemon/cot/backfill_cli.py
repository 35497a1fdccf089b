"""`hydra-daemon backfill cot`: run a COT backfill with a rich progress bar (CFTC files are free: no cost guard)."""

from __future__ import annotations

import sys

import anyio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hydra_daemon.config import Config
from hydra_daemon.cot.backfill import BackfillResult, backfill_cot
from hydra_daemon.cot.fetch import CotFetcher, CotFetchError
from hydra_daemon.cot.parse import CotParseError
from hydra_daemon.cot.persist import QuarantineLog, SeenLog, quarantine_path, seen_path
from hydra_daemon.lake.exporter import export_after_backfill
from hydra_daemon.redaction import redact_text
from hydra_daemon.store.arctic import Store, StoreLockedError


def backfill_cot_command(config: Config, start_year: int, end_year: int, console: Console | None = None) -> int:
    """Backfill every configured market for [start_year, end_year]; prints a summary; returns an exit code.

    Opens the store as writer, so it refuses (exit code 1, one `error:` line on stderr) while the daemon is running.
    """
    console = console or Console()
    try:
        with Store.open(config.storage.arctic_uri, writer=True) as store:
            result = anyio.run(_run, config, store, start_year, end_year, console)
            exported = export_after_backfill(config, store)
    except (StoreLockedError, CotFetchError, CotParseError, ValueError) as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    for market, rows in result.written.items():
        console.print(f"{market}: {rows} new weekly rows")
    console.print(
        f"feature rows written: {result.features}; quarantined rows: {result.quarantined} "
        f"(see {quarantine_path(config.state_dir)}); unreadable rows: {result.unreadable}"
    )
    console.print(f"lake: {len(exported)} partition(s) published under {config.storage.lake_dir}")
    return 0


async def _run(config: Config, store: Store, start_year: int, end_year: int, console: Console) -> BackfillResult:
    columns = (TextColumn("COT backfill {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        async with CotFetcher(config.cot) as fetcher:
            return await backfill_cot(
                store,
                config.markets,
                start_year,
                end_year,
                fetcher,
                progress,
                config=config.cot,
                quarantine=QuarantineLog(quarantine_path(config.state_dir)),
                looks=SeenLog(seen_path(config.state_dir)),
            )
