"""Live COT ingestion: sleep until each scheduled release, poll until the new report appears, record it bitemporally.

Each cycle downloads the year file(s) covering the newest `as_of` and the `revision_weeks` before it, records new
weeks at their scheduled release time and changed recent weeks as revisions (see `revealed_at_for`), quarantines
rows that break the accounting identities, refreshes the point-in-time features, then snapshots the store.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import anyio
import pandas as pd
import structlog

from hydra_daemon.clock import Clock, WallClock
from hydra_daemon.config import Config, CotConfig, MarketConfig
from hydra_daemon.cot.calendar import latest_as_of_released, next_release_after, release_time
from hydra_daemon.cot.fetch import CotFetcher, CotFetchError, CotFile, NotPublishedYet
from hydra_daemon.cot.parse import OUTPUT_COLUMNS, CotParseError, parse_report
from hydra_daemon.cot.persist import (
    ANY_MARKET,
    QuarantineLog,
    SeenLog,
    Unpublished,
    cot_table,
    quarantine_path,
    record_cycle,
    seen_path,
    write_features,
)
from hydra_daemon.cot.validate import validate_rows
from hydra_daemon.ingest import IngestPipeline, PipelineState, Problem
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.cot_panel import refresh_cot_panel
from hydra_daemon.store.symbols import COT, FEATURES

MAX_POLL_INTERVAL_S = 3600.0
SNAPSHOT_LABEL = "cot"
"""A cycle that wrote anything ends with `Store.snapshot("cot", ...)` of the libraries it writes: "what did they hold
then" stays answerable."""

log = structlog.get_logger()


@dataclass(frozen=True)
class CotCycle:
    """One poll's result: parsed rows of the configured codes, what could not be read, and when it was seen."""

    rows: pd.DataFrame
    parse_problems: tuple[Problem, ...]
    sources: tuple[str, ...]
    ingested_at: datetime
    quarantined: pd.DataFrame | None = None
    complete: bool = True
    """Every file asked for was read (or is not published yet): only then is a week missing from the rows missing
    from the CFTC's files, not from a failed download."""

    @property
    def newest_as_of(self) -> date | None:
        """The newest report date in the cycle's rows (None when it has no rows)."""
        return None if self.rows.empty else self.rows["as_of"].max().date()


def revealed_at_for(newest_as_of: date, observed_at: datetime, extra_closures: Collection[date]) -> datetime:
    """When a revision first seen at `observed_at`, in a file whose newest week is `newest_as_of`, became public:
    the release time of that newest week, or `observed_at` if later. In the live schedule we poll right at the
    release, so this is the release time (plus the seconds the download took); when catching up after downtime the
    correction may have been published after that release (e.g. a mid-week republication), and claiming the
    release time would be lookahead, so the time we actually saw it is used instead."""
    return max(release_time(newest_as_of, extra_closures), observed_at)


class CotIngestPipeline(IngestPipeline[CotCycle]):
    """fetch() yields a `CotCycle` at start-up and after every scheduled release once the new `as_of` appears.

    The pipeline owns `fetcher` and closes it when `run()` ends. States: polling, waiting_for_release, idle.
    """

    name = "cot"

    def __init__(
        self,
        *,
        store: Store,
        markets: tuple[MarketConfig, ...],
        config: CotConfig,
        fetcher: CotFetcher,
        clock: Clock,
        quarantine: QuarantineLog,
        seen: SeenLog,
    ) -> None:
        super().__init__(markets=tuple(m.name for m in markets), schema="cot")
        self._store = store
        self._markets = markets
        self._config = config
        self._fetcher = fetcher
        self._clock = clock
        self._quarantine = quarantine
        self._seen = seen
        """What earlier looks found missing after its release: such a week, seen later, is public only from then."""
        self._codes = {m.cftc_code for m in markets}
        self._log = log.bind(pipeline=self.name)

    async def run(self) -> None:
        """Run until cancelled; the fetcher's HTTP client is closed on the way out."""
        try:
            await super().run()
        finally:
            with anyio.CancelScope(shield=True):
                await self._fetcher.aclose()

    async def fetch(self) -> AsyncGenerator[CotCycle, None]:
        """Forever: poll until the latest released `as_of` is in the file, yield, sleep until the next release.

        A release that passed while a cycle was being stored is polled for at once, not slept through."""
        newest_seen: date | None = None
        self.stats.last_record_time = await anyio.to_thread.run_sync(self._stored_release)
        while True:
            expected = latest_as_of_released(self._clock.now(), self._config.extra_closures)
            if newest_seen is None or expected > newest_seen:
                async for cycle in self._poll_until(expected, newest_seen):
                    newest_seen = cycle.newest_as_of or newest_seen
                    yield cycle
                continue
            self.stats.state = PipelineState.IDLE
            _, release = next_release_after(self._clock.now(), self._config.extra_closures)
            self._log.info("cot_sleeping_until_release", release=release.isoformat())
            await self._clock.sleep_until(release)

    async def _poll_until(self, expected: date, newest_seen: date | None) -> AsyncIterator[CotCycle]:
        """Yield a cycle whenever the newest `as_of` grows (and once at start); stop once `expected` is present."""
        delay = self._config.poll_interval_s
        while True:
            self.stats.state = PipelineState.POLLING
            cycle = await self._fetch_cycle(expected)
            newest = cycle.newest_as_of if cycle else None
            if cycle is not None and (newest_seen is None or (newest is not None and newest > newest_seen)):
                newest_seen = newest
                yield cycle
            if newest is not None and newest >= expected:
                return
            if cycle is not None and cycle.complete:  # nothing after `newest` was public now, though due
                seen = Unpublished(newest if newest is not None else newest_seen, cycle.ingested_at)
                await anyio.to_thread.run_sync(self._seen.put, ANY_MARKET, seen)
            self.stats.state = PipelineState.WAITING_FOR_RELEASE
            self._log.info("cot_not_yet_published", expected_as_of=expected.isoformat(), retry_in_s=delay)
            await self._clock.sleep_until(self._clock.now() + timedelta(seconds=delay))
            delay = min(delay * 2, MAX_POLL_INTERVAL_S)

    async def _fetch_cycle(self, expected: date) -> CotCycle | None:
        """Download and parse the year files covering `expected` and the revision look-back; None if none usable."""
        first = expected - timedelta(weeks=self._config.revision_weeks)
        files: list[CotFile] = []
        complete = True
        for year in sorted({first.year, expected.year}):
            try:
                files.append(await self._fetcher.fetch_year(year))
            except NotPublishedYet as exc:
                self._log.info("cot_file_not_published", url=exc.url)
            except CotFetchError as exc:
                self._failed(str(exc))
                complete = False
        if not files:
            return None
        try:
            return await anyio.to_thread.run_sync(self._parse, files, complete)
        except CotParseError as exc:
            self._failed(str(exc))
            return None

    def _parse(self, files: list[CotFile], complete: bool) -> CotCycle:
        parsed = [parse_report(f.data, source=f.url, codes=self._codes) for f in files]
        frames = [p.rows for p in parsed if not p.rows.empty]
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(OUTPUT_COLUMNS))
        rows = rows.drop_duplicates(["code", "as_of"], keep="last").reset_index(drop=True)
        problems = tuple(problem for p in parsed for problem in p.problems)
        sources = tuple(f.url for f in files)
        return CotCycle(rows, problems, sources, ingested_at=self._clock.now(), complete=complete)

    def _failed(self, message: str) -> None:
        self.stats.last_error = message
        self.stats.fetch_failures += 1
        self._log.warning("cot_fetch_failed", error=message)

    def validate(self, batch: CotCycle) -> tuple[CotCycle, list[Problem]]:
        """Keep rows that satisfy the identities; the rest travel along as `quarantined` for persist()."""
        checked = validate_rows(batch.rows)
        clean = CotCycle(
            rows=checked.good,
            parse_problems=(),
            sources=batch.sources,
            ingested_at=batch.ingested_at,
            quarantined=checked.quarantined,
            complete=batch.complete,
        )
        return clean, [*batch.parse_problems, *checked.problems()]

    async def persist(self, clean: CotCycle) -> int:
        """Record every market's rows (worker thread); returns the number of COT rows written."""
        written = await anyio.to_thread.run_sync(self._persist_sync, clean)
        return written

    def _persist_sync(self, clean: CotCycle) -> int:
        if clean.quarantined is not None and not clean.quarantined.empty:
            self._quarantine.add(clean.quarantined, source=", ".join(clean.sources), ingested_at=clean.ingested_at)
        newest = clean.newest_as_of
        if newest is None:
            return 0
        revealed_at = revealed_at_for(newest, clean.ingested_at, self._config.extra_closures)
        total = features = 0
        releases: list[datetime | None] = []
        for market in self._markets:
            rows = clean.rows[clean.rows["code"] == market.cftc_code]
            written, wrote_features, history = self._record_market(market, rows, revealed_at, clean)
            total, features = total + written, features + wrote_features
            releases.append(self._newest_release(market.name, history, newest))
        # the market furthest behind: health is not ok while any market lacks the release due
        self.stats.last_record_time = None if None in releases else min(r for r in releases if r is not None)
        refresh_cot_panel(self._store)  # also after a crash left it stale: readers fall back until then
        if total or features:
            self._store.snapshot(SNAPSHOT_LABEL, (COT, FEATURES))
        return total

    def _record_market(
        self, market: MarketConfig, rows: pd.DataFrame, revealed_at: datetime, cycle: CotCycle
    ) -> tuple[int, int, pd.DataFrame]:
        """Record one market's rows of a cycle and refresh its features: (COT rows, feature rows, its history)."""
        ingested_at = cycle.ingested_at
        earlier = [seen for seen in (self._seen.get(ANY_MARKET), self._seen.get(market.name)) if seen is not None]
        if cycle.complete:
            self._seen.put(market.name, Unpublished(None if rows.empty else rows["as_of"].max().date(), ingested_at))
        table = cot_table(self._store, market.name)
        if rows.empty:
            return 0, 0, table.history()
        written = record_cycle(
            table,
            rows,
            revealed_at=revealed_at,
            ingested_at=ingested_at,
            revision_weeks=self._config.revision_weeks,
            extra_closures=self._config.extra_closures,
            unpublished=earlier,
            withheld=self._quarantine.first_seen(market.cftc_code),
        )
        if not written.empty:
            revisions = int((written["revision"] > 0).sum())
            self._log.info("cot_recorded", market=market.name, rows=len(written), revisions=revisions)
        history = table.history()
        return len(written), write_features(self._store, market.name, history, ingested_at=ingested_at), history

    def _stored_release(self) -> datetime | None:
        """What the store already holds, before the first download (a restart while the CFTC is unreachable must not
        read as nothing stored): the release of the newest week of the market furthest behind, None if one has none."""
        releases = []
        for market in self._markets:
            history = cot_table(self._store, market.name).history()
            if history.empty:
                return None
            releases.append(release_time(history["as_of"].max().date(), self._config.extra_closures))
        return min(releases, default=None)

    def _newest_release(self, market: str, history: pd.DataFrame, newest: date) -> datetime | None:
        """The scheduled release of the newest stored week of `market` (None: nothing stored) — not its
        `available_at`: a week revealed late is available from a later cycle, which may be after the release now due.
        A market behind the file's `newest` week (its row quarantined or absent) gets a line naming it."""
        if history.empty:
            self._log.warning("cot_market_not_stored", market=market, file_newest=newest.isoformat())
            return None
        week = history["as_of"].max()
        if week.date() < newest:
            self._log.warning(
                "cot_market_behind",
                market=market,
                newest_stored=week.date().isoformat(),
                file_newest=newest.isoformat(),
            )
        return release_time(week.date(), self._config.extra_closures)


def build_cot_pipeline(config: Config, store: Store, clock: Clock | None = None) -> CotIngestPipeline:
    """The COT pipeline for every configured market, on wall time unless `clock` is given (a supervisor factory)."""
    return CotIngestPipeline(
        store=store,
        markets=config.markets,
        config=config.cot,
        fetcher=CotFetcher(config.cot),
        clock=clock or WallClock(),
        quarantine=QuarantineLog(quarantine_path(config.state_dir)),
        seen=SeenLog(seen_path(config.state_dir)),
    )
