"""Backfill the COT tables from CFTC's yearly zips (2017 on) and the 2006-2016 history zip.

Backfilled weeks are revision 0 with `available_at` = their scheduled release time from the calendar (rule plus
override tables). Past revisions are invisible: yearly files are overwritten in place when the CFTC corrects a week,
so a backfill records only the latest values, as if they had been right at first release. Weeks already stored are
never touched, so re-running a backfill writes nothing new. A backfill that wrote anything ends with a store
snapshot `cot-backfill-<UTC time>`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import structlog

from hydra_daemon.config import CotConfig, MarketConfig
from hydra_daemon.cot.fetch import HISTORY_FIRST_YEAR, HISTORY_LAST_YEAR, CotFetcher, CotFile
from hydra_daemon.cot.parse import parse_report
from hydra_daemon.cot.persist import ANY_MARKET, QuarantineLog, SeenLog, cot_table, record_backfill, write_features
from hydra_daemon.cot.validate import validate_rows
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.cot_panel import refresh_cot_panel
from hydra_daemon.store.symbols import COT, FEATURES

SNAPSHOT_LABEL = "cot-backfill"
Progress = Callable[[int, int, str], None]
"""Called as progress(done, total, label) after each downloaded file."""

log = structlog.get_logger()


@dataclass
class BackfillResult:
    """Rows written per market, rows quarantined, unreadable rows, feature rows written and the store snapshot taken
    at the end (None when nothing was written)."""

    written: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    unreadable: int = 0
    features: int = 0
    snapshot: str | None = None


def backfill_files(start_year: int, end_year: int) -> list[tuple[str, int | None]]:
    """The downloads a backfill of [start_year, end_year] needs: ("history", None) once for any year <= 2016, then
    ("year", Y) for each later year."""
    if start_year > end_year:
        raise ValueError(f"start year {start_year} is after end year {end_year}")
    if start_year < HISTORY_FIRST_YEAR:
        raise ValueError(f"disaggregated COT reports start in {HISTORY_FIRST_YEAR}; got start year {start_year}")
    plan: list[tuple[str, int | None]] = []
    if start_year <= HISTORY_LAST_YEAR:
        plan.append(("history", None))
    plan.extend(("year", year) for year in range(max(start_year, HISTORY_LAST_YEAR + 1), end_year + 1))
    return plan


async def backfill_cot(
    store: Store,
    markets: Sequence[MarketConfig],
    start_year: int,
    end_year: int,
    fetcher: CotFetcher,
    progress: Progress,
    *,
    config: CotConfig,
    quarantine: QuarantineLog,
    looks: SeenLog,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BackfillResult:
    """Download, validate and record [start_year, end_year] for `markets`, then refresh their features. A week the
    daemon's looks (`looks`, `quarantine`) found missing after its release is public only from now."""
    plan = backfill_files(start_year, end_year)
    codes = {m.cftc_code for m in markets}
    result = BackfillResult(written={m.name: 0 for m in markets})
    for done, (kind, year) in enumerate(plan, start=1):
        file = await (fetcher.fetch_history() if year is None else fetcher.fetch_year(year))
        await anyio.to_thread.run_sync(
            _record_file, store, markets, file, codes, (start_year, end_year), config, quarantine, looks, now(), result
        )
        progress(done, len(plan), f"{kind} {year or f'{HISTORY_FIRST_YEAR}-{HISTORY_LAST_YEAR}'}")
    result.features = await anyio.to_thread.run_sync(_refresh_features, store, markets, now())
    await anyio.to_thread.run_sync(refresh_cot_panel, store)
    if result.features or any(result.written.values()):
        result.snapshot = await anyio.to_thread.run_sync(store.snapshot, SNAPSHOT_LABEL, (COT, FEATURES))
    log.info("cot_backfill_done", written=result.written, quarantined=result.quarantined, features=result.features)
    return result


def _record_file(
    store: Store,
    markets: Sequence[MarketConfig],
    file: CotFile,
    codes: set[str],
    years: tuple[int, int],
    config: CotConfig,
    quarantine: QuarantineLog,
    looks: SeenLog,
    ingested_at: datetime,
    result: BackfillResult,
) -> None:
    parsed = parse_report(file.data, source=file.url, codes=codes)
    for problem in parsed.problems:
        log.warning("record_rejected", pipeline="cot-backfill", what=problem.what, where=problem.where)
    rows = parsed.rows[parsed.rows["as_of"].dt.year.between(*years)]
    checked = validate_rows(rows)
    for problem in checked.problems():
        log.warning("record_rejected", pipeline="cot-backfill", what=problem.what, where=problem.where)
    quarantine.add(checked.quarantined, source=file.url, ingested_at=ingested_at)
    result.quarantined += len(checked.quarantined)
    result.unreadable += len(parsed.problems)
    for market in markets:
        market_rows = checked.good[checked.good["code"] == market.cftc_code]
        if market_rows.empty:
            continue
        written = record_backfill(
            cot_table(store, market.name),
            market_rows,
            ingested_at=ingested_at,
            extra_closures=config.extra_closures,
            unpublished=[seen for seen in (looks.get(ANY_MARKET), looks.get(market.name)) if seen is not None],
            withheld=quarantine.first_seen(market.cftc_code),
        )
        result.written[market.name] += len(written)


def _refresh_features(store: Store, markets: Sequence[MarketConfig], ingested_at: datetime) -> int:
    total = 0
    for market in markets:
        history = cot_table(store, market.name).history()
        total += write_features(store, market.name, history, ingested_at=ingested_at)
    return total
