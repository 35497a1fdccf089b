"""`backfill ... --dry-run`: what a backfill's Historical requests would cost, per schema and in total, and whether
the cost guard would let it run."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from hydra_daemon.databento.cost_guard import CostGuard, CostRefused, Quote


def print_cost_report(console: Console, title: str, quotes: list[Quote], guard: CostGuard) -> None:
    """A table of `quotes` by schema (requests, records, US dollars), the limit, today's spend and the verdict."""
    by_schema: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for quote in quotes:
        row = by_schema[quote.request.schema]
        row[0] += 1
        row[1] += quote.records
        row[2] += quote.cost_usd
    table = Table(title=title)
    for column in ("schema", "requests", "records", "cost (USD)"):
        table.add_column(column, justify="left" if column == "schema" else "right")
    for schema, (requests, records, cost) in by_schema.items():
        table.add_row(schema, f"{requests:.0f}", f"{records:.0f}", f"{cost:,.4f}")
    total = sum(q.cost_usd for q in quotes)
    table.add_row("total", str(len(quotes)), str(sum(q.records for q in quotes)), f"{total:,.4f}")
    console.print(table)
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
