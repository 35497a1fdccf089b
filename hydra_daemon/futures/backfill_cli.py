"""`hydra-daemon backfill futures`: a Historical backfill of one market's futures with a rich progress bar, or with
`--dry-run` what it would cost."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hydra_daemon.config import Config
from hydra_daemon.databento.cost_guard import CostRefused
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
    console = console or Console()
    plan = plan_backfill(config, market, start, end)
    quotes = quote_backfill(plan, plan.source.client())
    by_schema: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for quote in quotes:
        row = by_schema[quote.request.schema]
        row[0] += 1
        row[1] += quote.records
        row[2] += quote.cost_usd
    table = Table(title=f"futures backfill {market} [{start.date()}, {end.date()}): Databento Historical cost")
    for column in ("schema", "requests", "records", "cost (USD)"):
        table.add_column(column, justify="left" if column == "schema" else "right")
    for schema, (requests, records, cost) in by_schema.items():
        table.add_row(schema, f"{requests:.0f}", f"{records:.0f}", f"{cost:,.4f}")
    total = sum(q.cost_usd for q in quotes)
    table.add_row("total", str(len(quotes)), str(sum(q.records for q in quotes)), f"{total:,.4f}")
    console.print(table)
    guard = plan.source.guard
    spent = guard.ledger.spent_today(datetime.now(UTC).date())
    console.print(
        f"limit: ${guard.max_cost_usd:,.4f} per request and per UTC day ([databento] max_historical_cost_usd); "
        f"spent today: ${spent:,.4f}"
    )
    try:
        guard.check_total(quotes)
    except CostRefused as refused:
        console.print(f"a backfill would be refused: {refused}", markup=False)
    else:
        console.print("a backfill would be allowed (dry run: nothing downloaded)")
    return 0
