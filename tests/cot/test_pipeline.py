"""The COT pipeline end to end: simulated CFTC server on loopback, accelerated simulation clock, LMDB store."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import anyio
import pandas as pd
import pytest
from structlog.testing import capture_logs

from hydra_daemon.config import CotConfig, MarketConfig
from hydra_daemon.cot.fetch import CotFetcher
from hydra_daemon.cot.persist import QuarantineLog, SeenLog, cot_table
from hydra_daemon.cot.pipeline import CotIngestPipeline, revealed_at_for
from hydra_daemon.runtime.assessment import HealthLimits, PipelineView, Schedule, Status, Verdict, assess_pipeline
from hydra_daemon.sim.cftc_files import SimulatedCotFiles
from hydra_daemon.sim.cftc_server import CftcFiles
from hydra_daemon.sim.clock import SimClock
from hydra_daemon.sim.http_server import HttpServer
from hydra_daemon.sim.http_types import HttpResponse, Route
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.cot_panel import refresh_cot_panel
from hydra_daemon.store.features import FeatureStore
from tests.cot.conftest import ScriptedFiles

REAL_2021_ZIP = Path(__file__).resolve().parents[1] / "data" / "fut_disagg_txt_2021.zip"
HE = MarketConfig(name="HE", futures_root="HE", options_root="HE", cftc_code="054642")
LE = MarketConfig(name="LE", futures_root="LE", options_root="LE", cftc_code="057642")
THURSDAY = datetime(2026, 3, 19, 12, tzinfo=UTC)
PUBLISHED = datetime(2026, 3, 21, 12, tzinfo=UTC)  # a Saturday, between two releases
SPEED = 100_000.0  # one simulated week in about six wall seconds


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(90):  # a guard against hanging, not a timing assertion
        while not await anyio.to_thread.run_sync(condition):
            await anyio.sleep(0.05)


@pytest.fixture
def warm_symbol_lists(store: Store) -> None:
    """Warm the store's symbol lists: ArcticDB's first symbol listing of a library in a process
    waits on its storage lock (`StorageLock.WaitMs`: ~1 s by default, 10 ms in this suite, see conftest), each
    cycle's snapshot lists symbols, and at `SPEED` one wall second is a simulated day, so pay it before any
    simulation clock starts."""
    for library in ("cot", "features"):
        store.library(library).list_symbols()


async def _run_pipeline(
    store: Store, tmp_path: Path, route: Route, sim: SimClock, stop_when: Callable[[], bool]
) -> CotIngestPipeline:
    server = HttpServer("127.0.0.1", 0, [route], threaded=[route])
    await server.start()
    config = CotConfig(
        base_url=f"http://127.0.0.1:{server.port}", poll_interval_s=600, revision_weeks=4, timeout_s=5, retries=2
    )
    try:
        async with CotFetcher(config, backoff_base_s=0.01) as fetcher:
            pipeline = CotIngestPipeline(
                store=store,
                markets=(HE, LE),
                config=config,
                fetcher=fetcher,
                clock=sim,
                quarantine=QuarantineLog(tmp_path / "q.jsonl"),
                seen=SeenLog(tmp_path / "seen.json"),
            )
            async with anyio.create_task_group() as group:
                group.start_soon(pipeline.run)
                await _until(stop_when)
                group.cancel_scope.cancel()
    finally:
        await server.stop()
    return pipeline


def test_a_revision_is_available_from_the_release_or_when_seen_if_later() -> None:
    friday = datetime(2026, 3, 27, 19, 30, tzinfo=UTC)  # release of as_of 2026-03-24 (EDT)

    assert revealed_at_for(date(2026, 3, 24), datetime(2026, 3, 27, 19, 0, tzinfo=UTC), ()) == friday
    assert revealed_at_for(date(2026, 3, 24), friday + timedelta(seconds=3), ()) == friday + timedelta(seconds=3)


def _has(store: Store, market: str, as_of: str, revision: int = 0) -> Callable[[], bool]:
    def check() -> bool:
        history = cot_table(store, market).history() if store.library("cot").has_symbol(f"{market}.cot") else None
        if history is None:
            return False
        return bool(((history["as_of"] == _utc(as_of)) & (history["revision"] == revision)).any())

    return check


@pytest.mark.usefixtures("warm_symbol_lists")
async def test_release_then_revision_end_to_end(store: Store, tmp_path: Path) -> None:
    files = SimulatedCotFiles(seed=11, first_as_of=date(2026, 1, 6))
    original = files.record("054642", date(2026, 3, 10), THURSDAY)
    # Corrected on Saturday 2026-03-21: 700 contracts move from managed-money long to non-reportable long (Old).
    files.revise(
        "054642",
        date(2026, 3, 10),
        {
            "M_Money_Positions_Long_Old": int(str(original["M_Money_Positions_Long_Old"])) - 700,
            "NonRept_Positions_Long_Old": int(str(original["NonRept_Positions_Long_Old"])) + 700,
        },
        published_at=PUBLISHED,
    )
    sim = SimClock(start=THURSDAY, speed=SPEED)

    route = CftcFiles(files, sim)

    # Stop once everything asserted below is stored. Under load the pipeline can poll the 03-20 release a sim day
    # late, when the Saturday correction is already out: the correction alone does not mean 03-24 is in.
    wanted = [
        _has(store, "HE", "2026-03-10", revision=1),
        _has(store, "HE", "2026-03-24"),
        _has(store, "LE", "2026-03-24"),
    ]
    pipeline = await _run_pipeline(store, tmp_path, route, sim, lambda: all(check() for check in wanted))

    history = cot_table(store, "HE").history().set_index(["as_of", "revision"])
    # Start-up cycle on Thursday 2026-03-19 recorded every released week up to 2026-03-10.
    assert history.loc[(_utc("2026-03-10"), 0), "available_at"] == _utc("2026-03-13 19:30")
    # The release of Friday 2026-03-20 15:30 New York (19:30 UTC, EDT) appeared and was recorded after it.
    week = history.loc[(_utc("2026-03-17"), 0)]
    assert week["available_at"] == _utc("2026-03-20 19:30")
    assert week["ingested_at"] >= _utc("2026-03-20 19:30")
    # The correction is revision 1: never available before it was published (Saturday), nor before a release.
    revised = history.loc[(_utc("2026-03-10"), 1)]
    assert PUBLISHED <= revised["available_at"] <= revised["ingested_at"]
    assert revised["m_money_long_old"] == int(str(original["M_Money_Positions_Long_Old"])) - 700
    assert revised["m_money_long_all"] == history.loc[(_utc("2026-03-10"), 0), "m_money_long_all"] - 700
    assert history.loc[(_utc("2026-03-24"), 0), "available_at"] == _utc("2026-03-27 19:30")
    assert len(history) == len(history.index.get_level_values(0).unique()) + 1  # no other rows were re-written
    table = cot_table(store, "HE")
    just_before = revised["available_at"] - pd.Timedelta(microseconds=1)
    before = table.point_in_time(just_before.to_pydatetime()).set_index("as_of")
    after = table.point_in_time(revised["available_at"].to_pydatetime()).set_index("as_of")
    assert before.loc[_utc("2026-03-10"), "revision"] == 0
    assert after.loc[_utc("2026-03-10"), "revision"] == 1
    mm = FeatureStore(store).read_feature("HE", "cot_managed_money_net").set_index(["as_of", "available_at"])
    assert mm.loc[(_utc("2026-03-10"), revised["available_at"]), "value"].item() == (
        mm.loc[(_utc("2026-03-10"), _utc("2026-03-13 19:30")), "value"].item() - 700
    )
    assert cot_table(store, "LE").history()["as_of"].max() >= _utc("2026-03-24")
    assert pipeline.stats.rejects == 0
    # Every cycle that wrote something ended with a store snapshot: the first one pins the start-up state.
    snapshots = sorted(store.library("cot").list_snapshots())
    assert len(snapshots) >= 3 and all(name.startswith("cot-") for name in snapshots)
    assert sorted(store.library("features").list_snapshots()) == snapshots
    first = store.library("cot").read("HE.cot", as_of=snapshots[0]).data
    assert first["as_of"].max() == pd.Timestamp("2026-03-10") and (first["revision"] == 0).all()
    assert len(store.library("cot").read("HE.cot", as_of=snapshots[-1]).data) == len(history)
    assert pipeline.stats.records == len(history) + len(cot_table(store, "LE").history())
    assert not refresh_cot_panel(store)  # every cycle left the COT panel current (`store.cot_panel`)


@pytest.mark.usefixtures("warm_symbol_lists")
async def test_late_release_is_polled_with_backoff_until_it_appears(store: Store, tmp_path: Path) -> None:
    # The CFTC closes on Friday 2026-03-20 and publishes on Monday; our configuration does not know it.
    files = SimulatedCotFiles(seed=5, first_as_of=date(2026, 1, 6), extra_closures=[date(2026, 3, 20)])
    sim = SimClock(start=THURSDAY, speed=SPEED)

    route = CftcFiles(files, sim)

    with capture_logs() as events:
        await _run_pipeline(store, tmp_path, route, sim, _has(store, "HE", "2026-03-17"))

    week = cot_table(store, "HE").history().set_index("as_of").loc[_utc("2026-03-17")]
    assert week["ingested_at"] >= _utc("2026-03-23 19:30")  # published Monday 15:30 New York
    # the configured calendar said Friday, but a poll saw the week missing then: it was public only when we saw it
    assert week["available_at"] == week["ingested_at"]
    assert cot_table(store, "HE").point_in_time(datetime(2026, 3, 22, tzinfo=UTC))["as_of"].max() < _utc("2026-03-17")
    waits = [e["retry_in_s"] for e in events if e["event"] == "cot_not_yet_published"]
    assert waits[:4] == [600, 1200, 2400, 3600]
    assert set(waits[4:]) <= {3600}
    assert route.requests_served >= 1 + len(waits)


@pytest.mark.usefixtures("warm_symbol_lists")
async def test_a_failed_download_counts_as_a_fetch_failure_not_a_reconnect(store: Store, tmp_path: Path) -> None:
    files = SimulatedCotFiles(seed=3, first_as_of=date(2026, 1, 6))
    sim = SimClock(start=THURSDAY, speed=SPEED)
    route = CftcFiles(files, sim)
    route.fail_status(503, times=3)  # the first fetch_year gives up after its 3 attempts (retries=2)

    pipeline = await _run_pipeline(store, tmp_path, route, sim, _has(store, "HE", "2026-03-10"))

    assert (pipeline.stats.fetch_failures, pipeline.stats.reconnects) == (1, 0)
    assert pipeline.stats.as_dict()["fetch_failures"] == 1
    assert pipeline.stats.last_error is not None and "503" in pipeline.stats.last_error


YEAR_2021 = "/files/dea/history/fut_disagg_txt_2021.zip"


def _real_2021_lines(*, break_he: str | None = None, until: str = "210316") -> list[str]:
    """The real 2021 file's lines up to as_of `until` (YYMMDD); HE's row of `break_he` breaks an identity."""
    text = zipfile.ZipFile(REAL_2021_ZIP).read("f_year.txt").decode()
    header, *lines = text.splitlines(keepends=True)
    lines = [line for line in lines if next(csv.reader([line]))[1] <= until]
    if break_he is not None:
        [index] = [i for i, line in enumerate(lines) if f",{break_he}," in line and ",054642," in line]
        fields = lines[index].split(",")
        fields[13] = str(int(fields[13]) + 1)  # M_Money_Positions_Long_All (after 7 id columns and 6 positions)
        lines[index] = ",".join(fields)
    return [header, *lines]


def _year_file(lines: list[str]) -> HttpResponse:
    return HttpResponse(200, _zip("".join(lines).encode()), "application/zip")


@pytest.mark.usefixtures("warm_symbol_lists")
async def test_rows_breaking_identities_are_quarantined_not_stored(store: Store, tmp_path: Path) -> None:
    files = ScriptedFiles()
    files.set(YEAR_2021, _year_file(_real_2021_lines(break_he="210309")))
    sim = SimClock(start=datetime(2021, 3, 20, 12, tzinfo=UTC), speed=SPEED)  # the file ends with as_of 2021-03-16

    pipeline = await _run_pipeline(store, tmp_path, files, sim, _has(store, "HE", "2021-03-16"))

    stored = set(cot_table(store, "HE").history()["as_of"])
    assert _utc("2021-03-02") in stored and _utc("2021-03-09") not in stored
    [entry] = QuarantineLog(tmp_path / "q.jsonl").entries()
    assert (entry["code"], entry["as_of"]) == ("054642", "2021-03-09")
    assert entry["reason"] == "tot_rept_long_all != sum of reportable long positions"
    assert pipeline.stats.rejects == 1


@pytest.mark.usefixtures("warm_symbol_lists")
@pytest.mark.parametrize("fault", ["quarantined", "absent"])
async def test_a_newest_week_bad_or_absent_at_its_release_is_public_only_from_the_cycle_that_saw_it(
    store: Store, tmp_path: Path, fault: str
) -> None:
    """At its release HE's row of the newest week breaks an identity (or is missing) while LE's is there: the poll
    stops, since the week is out. When the next release brings the row, it is newer than every stored HE week,
    yet its values were not public at its scheduled release."""
    at_release = _real_2021_lines(break_he="210309", until="210309")
    if fault == "absent":
        at_release = [line for line in at_release if not (",210309," in line and ",054642," in line)]
    files = ScriptedFiles()
    files.set(YEAR_2021, _year_file(at_release), _year_file(_real_2021_lines()))
    sim = SimClock(start=datetime(2021, 3, 13, 12, tzinfo=UTC), speed=SPEED)  # Saturday after the 03-09 release

    await _run_pipeline(store, tmp_path, files, sim, _has(store, "HE", "2021-03-16"))

    he = cot_table(store, "HE").history().set_index("as_of")
    week = _utc("2021-03-09")
    assert he.loc[week, "available_at"] >= _utc("2021-03-19 19:30")  # the next release (EDT), not 03-12 20:30
    assert he.loc[week, "available_at"] <= he.loc[week, "ingested_at"]
    assert he.loc[_utc("2021-03-16"), "available_at"] == _utc("2021-03-19 19:30")
    assert week not in set(cot_table(store, "HE").point_in_time(datetime(2021, 3, 15, tzinfo=UTC))["as_of"])
    le = cot_table(store, "LE").history().set_index("as_of")
    assert le.loc[week, "available_at"] == _utc("2021-03-12 20:30")  # LE's row was out on time
    assert len(QuarantineLog(tmp_path / "q.jsonl").entries()) == (fault == "quarantined")
    assert files.requested == [YEAR_2021, YEAR_2021]


@pytest.mark.usefixtures("warm_symbol_lists")
@pytest.mark.parametrize("fault", ["absent_for_he", "release_late_for_all"])
async def test_a_week_seen_missing_after_its_release_stays_late_across_a_pipeline_restart(
    store: Store, tmp_path: Path, fault: str
) -> None:
    """Run 1 reads the files on Saturday 2021-03-13, after the 03-09 week's release (03-12 20:30 UTC): HE's 03-09 row
    is not there (absent for HE, or the whole week late). The pipeline is then built again (a daemon restart, or the
    supervisor restarting it). Run 2, after the next release, finds the row: it was provably not public on 03-13."""
    at_release = _real_2021_lines(until="210309" if fault == "absent_for_he" else "210302")
    if fault == "absent_for_he":
        at_release = [line for line in at_release if not (",210309," in line and ",054642," in line)]
    files = ScriptedFiles()
    files.set(YEAR_2021, _year_file(at_release), _year_file(_real_2021_lines()))
    run1 = SimClock(start=datetime(2021, 3, 13, 12, tzinfo=UTC), speed=SPEED)
    await _run_pipeline(store, tmp_path, files, run1, _has(store, "HE", "2021-03-02"))
    assert _utc("2021-03-09") not in set(cot_table(store, "HE").history()["as_of"])

    run2 = SimClock(start=datetime(2021, 3, 20, 12, tzinfo=UTC), speed=SPEED)  # after the 03-16 release
    await _run_pipeline(store, tmp_path, files, run2, _has(store, "HE", "2021-03-16"))

    he = cot_table(store, "HE").history().set_index("as_of")
    assert he.loc[_utc("2021-03-09"), "available_at"] >= _utc("2021-03-20 12:00")  # seen by run 2's first look
    assert _utc("2021-03-09") not in set(
        cot_table(store, "HE").point_in_time(datetime(2021, 3, 13, 13, tzinfo=UTC))["as_of"]
    )


@pytest.mark.usefixtures("warm_symbol_lists")
async def test_health_is_not_ok_while_one_market_lacks_the_release_due(store: Store, tmp_path: Path) -> None:
    """HE's row of the newest week breaks an identity, LE's is stored: the pipeline's newest release is HE's, the
    one before, so health degrades after the grace period and a line names HE."""
    files = ScriptedFiles()
    files.set(YEAR_2021, _year_file(_real_2021_lines(break_he="210316")))
    now = datetime(2021, 3, 20, 12, tzinfo=UTC)  # the file ends with as_of 2021-03-16, released 03-19 19:30 UTC
    sim = SimClock(start=now, speed=SPEED)

    with capture_logs() as events:
        pipeline = await _run_pipeline(store, tmp_path, files, sim, _has(store, "LE", "2021-03-16"))

    assert pipeline.stats.last_record_time == _utc("2021-03-12 20:30")  # HE's 03-09, released before DST
    behind = [e for e in events if e["event"] == "cot_market_behind"]
    assert [(e["market"], e["newest_stored"], e["file_newest"]) for e in behind] == [("HE", "2021-03-09", "2021-03-16")]
    view = PipelineView(
        "cot", Schedule.COT, ("cot",), "running", "idle", now, last_record_time=pipeline.stats.last_record_time
    )
    verdict = assess_pipeline(view, now, HealthLimits(cot_grace_s=6 * 3600))
    assert verdict.status is Status.DEGRADED
    assert verdict.reasons[0].startswith("COT release for 2021-03-16")


@pytest.mark.usefixtures("warm_symbol_lists")
async def test_a_restart_while_the_cftc_is_unreachable_reports_what_is_stored(store: Store, tmp_path: Path) -> None:
    """Run 1 stores both markets through the 03-16 week (released 03-19 19:30 UTC). On Monday the pipeline is built
    again (a daemon or supervisor restart) and the CFTC answers 503: health judges the week stored, not nothing."""
    files = ScriptedFiles()
    files.set(YEAR_2021, _year_file(_real_2021_lines()))
    run1 = SimClock(start=datetime(2021, 3, 20, 12, tzinfo=UTC), speed=SPEED)
    await _run_pipeline(
        store, tmp_path, files, run1, lambda: _has(store, "HE", "2021-03-16")() and _has(store, "LE", "2021-03-16")()
    )

    files.set(YEAR_2021, HttpResponse(503, b"unavailable", "text/plain"))
    asked = len(files.requested)
    monday = datetime(2021, 3, 22, 12, tzinfo=UTC)
    restarted = await _run_pipeline(
        store, tmp_path, files, SimClock(start=monday, speed=1.0), lambda: len(files.requested) > asked
    )

    assert restarted.stats.last_record_time == _utc("2021-03-19 19:30")
    view = PipelineView(
        "cot", Schedule.COT, ("cot",), "running", "polling", monday, last_record_time=restarted.stats.last_record_time
    )
    assert assess_pipeline(view, monday, HealthLimits(cot_grace_s=6 * 3600)) == Verdict(Status.OK)


@pytest.mark.usefixtures("warm_symbol_lists")
async def test_a_failed_download_is_not_taken_for_an_unpublished_week(store: Store, tmp_path: Path) -> None:
    """Saturday 2021-01-09: the due week 2021-01-05 is in the 2021 file, whose download fails once (503 on every
    retry) while the 2020 file of the look-back is read. Missing from that poll's rows, the week was still public
    on time: it keeps its scheduled release when the next poll reads it."""
    header = _real_2021_lines()[0]
    failed = HttpResponse(503, b"unavailable", "text/plain")
    files = ScriptedFiles()
    files.set("/files/dea/history/fut_disagg_txt_2020.zip", _year_file([header]))
    files.set(YEAR_2021, failed, failed, failed, _year_file(_real_2021_lines(until="210105")))
    sim = SimClock(start=datetime(2021, 1, 9, 12, tzinfo=UTC), speed=SPEED)

    pipeline = await _run_pipeline(store, tmp_path, files, sim, _has(store, "HE", "2021-01-05"))

    week = cot_table(store, "HE").history().set_index("as_of").loc[_utc("2021-01-05")]
    assert week["available_at"] == _utc("2021-01-08 20:30")
    assert week["ingested_at"] > _utc("2021-01-09 12:00")  # read by the poll after the failed one
    assert pipeline.stats.fetch_failures == 1


@pytest.mark.usefixtures("warm_symbol_lists")
async def test_health_is_not_ok_when_a_market_lacks_the_due_week_though_an_older_one_came_late(
    store: Store, tmp_path: Path
) -> None:
    """HE's 03-09 row is bad at its release and clean a week later, available from then (03-19 19:30); its 03-16
    row is bad. HE's newest stored week is 03-09, whose availability equals the 03-16 release now due: health must
    still see HE a week behind."""
    files = ScriptedFiles()
    at_release = _year_file(_real_2021_lines(break_he="210309", until="210309"))
    files.set(YEAR_2021, at_release, _year_file(_real_2021_lines(break_he="210316")))
    sim = SimClock(start=datetime(2021, 3, 13, 12, tzinfo=UTC), speed=SPEED)

    def done() -> bool:
        return _has(store, "HE", "2021-03-09")() and _has(store, "LE", "2021-03-16")()

    pipeline = await _run_pipeline(store, tmp_path, files, sim, done)

    he = cot_table(store, "HE").history().set_index("as_of")
    assert _utc("2021-03-16") not in he.index and he.loc[_utc("2021-03-09"), "available_at"] >= _utc("2021-03-19 19:30")
    now = datetime(2021, 3, 20, 12, tzinfo=UTC)  # 16.5 h after the 03-16 release, beyond the 6 h grace
    view = PipelineView(
        "cot", Schedule.COT, ("cot",), "running", "idle", now, last_record_time=pipeline.stats.last_record_time
    )
    assert assess_pipeline(view, now, HealthLimits(cot_grace_s=6 * 3600)).status is Status.DEGRADED


def _zip(text: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("f_year.txt", text)
    return buffer.getvalue()


@pytest.mark.usefixtures("warm_symbol_lists")
async def test_year_boundary_reads_both_year_files(store: Store, tmp_path: Path) -> None:
    # Saturday 2027-01-09: as_of 2027-01-05 is out (Friday 2027-01-08); its revision look-back reaches into 2026.
    files = SimulatedCotFiles(seed=2, first_as_of=date(2026, 10, 6))
    sim = SimClock(start=datetime(2027, 1, 9, 12, tzinfo=UTC), speed=SPEED)
    route = CftcFiles(files, sim)

    await _run_pipeline(store, tmp_path, route, sim, _has(store, "HE", "2027-01-05"))

    history = cot_table(store, "HE").history()
    assert history["as_of"].min() == _utc("2026-10-06")
    assert _utc("2026-12-29") in set(history["as_of"])
    # 2026-12-29: Friday 2027-01-01 is New Year's Day, so the release moved to Monday 2027-01-04 (EST).
    assert history.set_index("as_of").loc[_utc("2026-12-29"), "available_at"] == _utc("2027-01-04 20:30")
