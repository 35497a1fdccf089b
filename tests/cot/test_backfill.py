"""Backfill over the 2006-2016 history zip and yearly zips from the simulated CFTC server, and its CLI wrapper."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from hydra_daemon.config import CotConfig, MarketConfig, parse_config
from hydra_daemon.cot.backfill import BackfillResult, backfill_cot
from hydra_daemon.cot.backfill_cli import backfill_cot_command
from hydra_daemon.cot.calendar import release_time, weekly_as_of_dates
from hydra_daemon.cot.fetch import CotFetcher, CotFile
from hydra_daemon.cot.persist import QuarantineLog, SeenLog, cot_table
from hydra_daemon.sim.cftc_files import SimulatedCotFiles
from hydra_daemon.sim.cftc_server import CftcFiles
from hydra_daemon.sim.clock import SimClock
from hydra_daemon.sim.http_server import HttpServer
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.cot_panel import refresh_cot_panel
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.lake import read_manifest
from hydra_daemon.store.uri import default_lmdb_uri
from tests.cot.conftest import CotBuilder

HE = MarketConfig(name="HE", futures_root="HE", options_root="HE", cftc_code="054642")
ZC = MarketConfig(name="ZC", futures_root="ZC", options_root="OZC", cftc_code="002602")
NOW = datetime(2026, 6, 1, tzinfo=UTC)
FIRST = date(2014, 1, 7)


def _route() -> CftcFiles:
    return CftcFiles(SimulatedCotFiles(seed=21, first_as_of=FIRST), SimClock(start=NOW))


async def _backfill(store: Store, base_url: str, tmp_path: Path, progress: list) -> BackfillResult:
    config = CotConfig(base_url=base_url, timeout_s=10, retries=1)
    async with CotFetcher(config, backoff_base_s=0.01) as fetcher:
        return await backfill_cot(
            store,
            [HE, ZC],
            2015,
            2017,
            fetcher,
            lambda *a: progress.append(a),
            config=config,
            quarantine=QuarantineLog(tmp_path / "q.jsonl"),
            looks=SeenLog(tmp_path / "seen.json"),
            now=lambda: NOW,
        )


async def test_backfill_over_history_and_yearly_zips_is_idempotent(store: Store, tmp_path: Path) -> None:
    route = _route()
    server = HttpServer("127.0.0.1", 0, [route], threaded=[route])
    await server.start()
    try:
        progress: list = []
        first = await _backfill(store, f"http://127.0.0.1:{server.port}", tmp_path, progress)
        panel_was_current = not refresh_cot_panel(store)
        history = cot_table(store, "HE").history()
        again = await _backfill(store, f"http://127.0.0.1:{server.port}", tmp_path, [])
    finally:
        await server.stop()

    weeks = weekly_as_of_dates(date(2015, 1, 1), date(2017, 12, 31))
    assert progress == [(1, 2, "history 2006-2016"), (2, 2, "year 2017")]
    assert list(history["as_of"]) == [pd.Timestamp(d, tz="UTC") for d in weeks]
    assert (history["revision"] == 0).all()
    assert list(history["available_at"]) == [pd.Timestamp(release_time(d)) for d in weeks]
    assert first.written == {"HE": len(weeks), "ZC": len(weeks)}
    assert first.quarantined == 0 and first.unreadable == 0
    assert panel_was_current  # the backfill left the COT panel current (`store.cot_panel`)
    assert again.written == {"HE": 0, "ZC": 0} and again.features == 0
    assert len(cot_table(store, "HE").history()) == len(weeks)
    z = FeatureStore(store).read_feature("HE", "cot_managed_money_net_z156")
    defined = z[z["value"].notna()]
    assert defined["as_of"].min() == pd.Timestamp(weeks[155], tz="UTC")  # first full 156-week window
    assert len(defined) == len(weeks) - 155 and len(z) == len(weeks)  # NaN rows before it


@pytest.fixture
def threaded_venue() -> Iterator[str]:
    """The simulated CFTC server on its own event loop in a thread (the CLI runs its own loop)."""
    loop = asyncio.new_event_loop()
    route = _route()
    server = HttpServer("127.0.0.1", 0, [route], threaded=[route])
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def test_cli_backfill_prints_progress_and_summary(threaded_venue: str, tmp_path: Path) -> None:
    config = parse_config(
        {
            "state_dir": str(tmp_path),
            "health_socket": str(tmp_path / "health.sock"),
            "cot": {"base_url": threaded_venue},
            "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
        }
    )
    output = io.StringIO()

    code = backfill_cot_command(config, 2017, 2017, console=Console(file=output, width=120))

    assert code == 0
    text = output.getvalue()
    assert f"HE: {len(weekly_as_of_dates(date(2017, 1, 1), date(2017, 12, 31)))} new weekly rows" in text
    assert "COT backfill year 2017" in text
    with Store.open(default_lmdb_uri(tmp_path), writer=False) as store:
        history = cot_table(store, "HE").history()
        assert history["as_of"].dt.year.unique().tolist() == [2017]
    manifest = read_manifest(tmp_path / "lake" / "cot" / "HE.cot")  # the backfill exported what it wrote
    assert manifest is not None and manifest.rows == len(history)
    assert sorted(manifest.partitions) == sorted(history["as_of"].dt.date.unique())
    assert read_manifest(tmp_path / "lake" / "features" / "HE.cot_total_oi") is not None
    assert "lake: " in text


def test_cli_backfill_refuses_while_another_writer_holds_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = parse_config(
        {
            "state_dir": str(tmp_path),
            "health_socket": str(tmp_path / "health.sock"),
            "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
        }
    )
    output = io.StringIO()

    with Store.open(config.storage.arctic_uri, writer=True):
        code = backfill_cot_command(config, 2017, 2017, console=Console(file=output, width=200))

    assert code == 1
    assert output.getvalue() == ""
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: store ") and "already open for writing" in line
    assert "writer=False" not in line, "no Python API hint for a command line user"
    assert "systemctl stop hydra-daemon" in line


class _OneYearFile:
    """A fetcher serving one year file's text (the backfill reads nothing else for a single recent year)."""

    def __init__(self, text: bytes) -> None:
        self.text = text

    async def fetch_year(self, year: int) -> CotFile:
        return CotFile(f"file:///fut_disagg_txt_{year}.zip", "f_year.txt", self.text)


def _weeks_file(cot: CotBuilder, weeks: list[date], broken: date | None) -> bytes:
    rows = []
    for i, as_of in enumerate(weeks):
        positions: dict[str, int | str] = dict(cot.simple_positions(i))
        if as_of == broken:
            key = next(k for k in positions if "open_interest" in k and k.endswith("all"))
            positions[key] = int(positions[key]) + 12345  # breaks the identities
        rows.append(cot.row(HE.cftc_code, as_of, positions))
    return cot.csv(rows)


async def test_a_week_seen_broken_after_its_release_is_not_dated_back_by_a_later_backfill(
    store: Store, tmp_path: Path
) -> None:
    """A backfill on 03-20 quarantines the 03-10 week (released 03-13): the file held it broken a week after its
    release. Once the CFTC corrects it, a later backfill dated it back to 03-13, a week before its corrected values
    could have been seen (found by a review helper)."""
    weeks, broken = [date(2026, 3, 3), date(2026, 3, 10), date(2026, 3, 17)], date(2026, 3, 10)
    cot, quarantine, looks = CotBuilder(), QuarantineLog(tmp_path / "q.jsonl"), SeenLog(tmp_path / "seen.json")
    for text, now in (
        (_weeks_file(cot, weeks, broken), datetime(2026, 3, 20, tzinfo=UTC)),
        (_weeks_file(cot, weeks, None), datetime(2026, 4, 1, tzinfo=UTC)),
    ):
        fetcher = _OneYearFile(text)
        await backfill_cot(
            store, [HE], 2026, 2026, fetcher, lambda *a: None,  # type: ignore[arg-type]
            config=CotConfig(), quarantine=quarantine, looks=looks, now=lambda now=now: now,
        )  # fmt: skip
    history = cot_table(store, "HE").history().set_index("as_of")["available_at"]
    assert history[pd.Timestamp(broken, tz="UTC")] == pd.Timestamp("2026-04-01", tz="UTC")
    assert history[pd.Timestamp(weeks[0], tz="UTC")] == pd.Timestamp(release_time(weeks[0]))
