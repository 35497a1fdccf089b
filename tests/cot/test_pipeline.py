"""The COT pipeline end to end: simulated CFTC server on loopback, accelerated simulation clock, LMDB store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import anyio
import pandas as pd

from hydra_daemon.config import CotConfig, MarketConfig
from hydra_daemon.cot.clock import SimulatedClock
from hydra_daemon.cot.fetch import CotFetcher
from hydra_daemon.cot.persist import QuarantineLog, cot_table
from hydra_daemon.cot.pipeline import CotIngestPipeline
from hydra_daemon.sim.cftc_files import SimulatedCotFiles
from hydra_daemon.sim.cftc_server import CftcFiles
from hydra_daemon.sim.clock import SimClock
from hydra_daemon.sim.http_server import HttpServer
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.features import FeatureStore

HE = MarketConfig(name="HE", futures_root="HE", options_root="HE", cftc_code="054642")
LE = MarketConfig(name="LE", futures_root="LE", options_root="LE", cftc_code="057642")
THURSDAY = datetime(2026, 3, 19, 12, tzinfo=UTC)
SPEED = 100_000.0  # one simulated week in about six wall seconds


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(90):  # a guard against hanging, not a timing assertion
        while not await anyio.to_thread.run_sync(condition):
            await anyio.sleep(0.05)


async def _run_pipeline(store: Store, tmp_path: Path, files: SimulatedCotFiles, sim: SimClock,
                        stop_when: Callable[[], bool], closures: tuple[date, ...] = ()) -> CotIngestPipeline:
    route = CftcFiles(files, sim)
    server = HttpServer("127.0.0.1", 0, [route], threaded=[route])
    await server.start()
    config = CotConfig(base_url=f"http://127.0.0.1:{server.port}", poll_interval_s=600, revision_weeks=4,
                       timeout_s=5, retries=2, extra_closures=closures)
    try:
        async with CotFetcher(config, backoff_base_s=0.01) as fetcher:
            pipeline = CotIngestPipeline(store=store, markets=(HE, LE), config=config, fetcher=fetcher,
                                         clock=SimulatedClock(sim), quarantine=QuarantineLog(tmp_path / "q.jsonl"))
            async with anyio.create_task_group() as group:
                group.start_soon(pipeline.run)
                await _until(stop_when)
                group.cancel_scope.cancel()
    finally:
        await server.stop()
    return pipeline


def _has(store: Store, market: str, as_of: str, revision: int = 0) -> Callable[[], bool]:
    def check() -> bool:
        history = cot_table(store, market).history() if store.library("cot").has_symbol(f"{market}.cot") else None
        if history is None:
            return False
        return bool(((history["as_of"] == _utc(as_of)) & (history["revision"] == revision)).any())
    return check


async def test_release_then_revision_end_to_end(store: Store, tmp_path: Path) -> None:
    files = SimulatedCotFiles(seed=11, first_as_of=date(2026, 1, 6))
    original = files.record("054642", date(2026, 3, 10), THURSDAY)
    # Corrected on Saturday 2026-03-21: 700 contracts move from managed-money long to non-reportable long (Old).
    files.revise("054642", date(2026, 3, 10), {
        "M_Money_Positions_Long_Old": int(original["M_Money_Positions_Long_Old"]) - 700,
        "NonRept_Positions_Long_Old": int(original["NonRept_Positions_Long_Old"]) + 700,
    }, published_at=datetime(2026, 3, 21, 12, tzinfo=UTC))
    sim = SimClock(start=THURSDAY, speed=SPEED)

    pipeline = await _run_pipeline(store, tmp_path, files, sim, _has(store, "HE", "2026-03-10", revision=1))

    history = cot_table(store, "HE").history().set_index(["as_of", "revision"])
    # Start-up cycle on Thursday 2026-03-19 recorded every released week up to 2026-03-10.
    assert history.loc[(_utc("2026-03-10"), 0), "available_at"] == _utc("2026-03-13 19:30")
    # The release of Friday 2026-03-20 15:30 New York (19:30 UTC, EDT) appeared and was recorded after it.
    week = history.loc[(_utc("2026-03-17"), 0)]
    assert week["available_at"] == _utc("2026-03-20 19:30")
    assert week["ingested_at"] >= _utc("2026-03-20 19:30")
    # The correction is revision 1, available from the release that revealed it (2026-03-27, as_of 2026-03-24).
    revised = history.loc[(_utc("2026-03-10"), 1)]
    assert revised["available_at"] == _utc("2026-03-27 19:30")
    assert revised["m_money_long_old"] == int(original["M_Money_Positions_Long_Old"]) - 700
    assert revised["m_money_long_all"] == history.loc[(_utc("2026-03-10"), 0), "m_money_long_all"] - 700
    assert history.loc[(_utc("2026-03-24"), 0), "available_at"] == _utc("2026-03-27 19:30")
    assert len(history) == len(history.index.get_level_values(0).unique()) + 1  # no other rows were re-written
    table = cot_table(store, "HE")
    before = table.point_in_time(datetime(2026, 3, 27, 19, 0, tzinfo=UTC)).set_index("as_of")
    after = table.point_in_time(datetime(2026, 3, 27, 20, 0, tzinfo=UTC)).set_index("as_of")
    assert before.loc[_utc("2026-03-10"), "revision"] == 0 and _utc("2026-03-24") not in before.index
    assert after.loc[_utc("2026-03-10"), "revision"] == 1
    mm = FeatureStore(store).read_feature("HE", "cot_managed_money_net").set_index(["as_of", "available_at"])
    assert mm.loc[(_utc("2026-03-10"), _utc("2026-03-27 19:30")), "value"].item() == (
        mm.loc[(_utc("2026-03-10"), _utc("2026-03-13 19:30")), "value"].item() - 700
    )
    assert cot_table(store, "LE").history()["as_of"].max() >= _utc("2026-03-24")
    assert pipeline.stats.rejects == 0
    assert pipeline.stats.records == len(history) + len(cot_table(store, "LE").history())


async def test_late_release_is_polled_with_backoff_until_it_appears(store: Store, tmp_path: Path) -> None:
    # The CFTC closes on Friday 2026-03-20 and publishes on Monday; our configuration does not know it.
    files = SimulatedCotFiles(seed=5, first_as_of=date(2026, 1, 6), extra_closures=[date(2026, 3, 20)])
    sim = SimClock(start=THURSDAY, speed=SPEED)

    pipeline = await _run_pipeline(store, tmp_path, files, sim, _has(store, "HE", "2026-03-17"))

    week = cot_table(store, "HE").history().set_index("as_of").loc[_utc("2026-03-17")]
    assert week["ingested_at"] >= _utc("2026-03-23 19:30")  # published Monday 15:30 New York
    assert week["available_at"] == _utc("2026-03-20 19:30")  # the configured calendar's release time
    assert pipeline.stats.state in {"polling", "sleeping", "running"}
