"""Faults switched through the venue's one fault map (`POST /sim/faults`): CFTC file faults and the invalid bar."""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import databento as db
import httpx
import pytest
from databento_dbn import OHLCVMsg, SymbolMappingMsg

from hydra_daemon.databento.historical_client import historical_client
from hydra_daemon.sim.cftc_files import Value
from hydra_daemon.sim.venue import FAULT_NAMES, Venue, VenueConfig, VenueThread
from tests.helpers import Collector, fast_config, live_client, wait_until

DATASET = "GLBX.MDP3"
YEAR_ZIP = "/files/dea/history/fut_disagg_txt_2026.zip"  # the venue's clock is in Nov 2026


@pytest.fixture(scope="module")
def venue_config() -> VenueConfig:
    return fast_config(seed=13)


@pytest.fixture(autouse=True)
def clear_faults(venue: VenueThread) -> Iterator[None]:
    yield
    post_fault(venue, "clear")


def post_fault(venue: VenueThread, name: str, value: str = "") -> httpx.Response:
    return httpx.post(f"{venue.info.historical_url}/sim/faults", data={"name": name, "value": value})


def get_zip(venue: VenueThread, timeout: float = 30.0) -> httpx.Response:
    return httpx.get(f"{venue.info.cftc_url}{YEAR_ZIP}", timeout=timeout)


def members(payload: bytes) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        return archive.infolist()


def test_every_cftc_fault_is_switched_over_http_and_clear_restores_the_file(venue: VenueThread) -> None:
    normal = get_zip(venue)
    assert normal.status_code == 200 and [m.filename for m in members(normal.content)] == ["f_year.txt"]

    assert post_fault(venue, "cftc_fail", "429:1").status_code == 200
    throttled = get_zip(venue)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "1"
    assert get_zip(venue).content == normal.content  # COUNT=1: the next answer is normal again

    post_fault(venue, "cftc_fail", "500")
    assert [get_zip(venue).status_code for _ in range(2)] == [500, 500]  # no COUNT: until cleared
    post_fault(venue, "clear")
    assert get_zip(venue).content == normal.content

    post_fault(venue, "cftc_truncated", "1")
    truncated = get_zip(venue).content
    assert len(truncated) == len(normal.content) // 2 and not zipfile.is_zipfile(io.BytesIO(truncated))

    post_fault(venue, "cftc_corrupt", "1")
    with (
        zipfile.ZipFile(io.BytesIO(get_zip(venue).content)) as archive,
        pytest.raises((zipfile.BadZipFile, zlib.error)),
    ):
        archive.read("f_year.txt")

    post_fault(venue, "cftc_zip_bomb", f"{1 << 22}:1")
    bomb = get_zip(venue).content
    [inner] = members(bomb)
    assert inner.file_size == 1 << 22 and len(bomb) < (1 << 22) // 100

    post_fault(venue, "cftc_wrong_member", "annual.txt:1")
    assert [m.filename for m in members(get_zip(venue).content)] == ["annual.txt"]

    post_fault(venue, "cftc_html", "1")
    html = get_zip(venue)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")

    post_fault(venue, "cftc_slow", "5:1")
    with pytest.raises(httpx.ReadTimeout):
        get_zip(venue, timeout=0.5)
    assert get_zip(venue).content == normal.content


def test_the_year_zip_holds_the_weeks_released_by_the_venue_clock(venue: VenueThread) -> None:
    text = year_text(venue)
    assert b",261027,2026-10-27," in text  # released Fri 2026-10-30, before the clock's Mon 2026-11-02 start
    assert b"2026-11-03" not in text  # released Fri 2026-11-06: minutes of wall time away at speed 600


def test_a_cot_revision_posted_at_run_time_is_served_with_identities_intact(venue: VenueThread) -> None:
    as_of = date(2026, 10, 20)

    def lean_hogs() -> dict[str, Value]:
        return venue.call(lambda v: v.cftc.files.record("054642", as_of, v.clock.now() if v.clock else None))

    before, text_before = lean_hogs(), year_text(venue)
    assert post_fault(venue, "cftc_revision", f"054642:{as_of}:250").status_code == 200
    after, text_after = lean_hogs(), year_text(venue)
    assert after["M_Money_Positions_Long_Old"] == int(str(before["M_Money_Positions_Long_Old"])) - 250
    assert after["NonRept_Positions_Long_All"] == int(str(before["NonRept_Positions_Long_All"])) + 250
    assert after["Open_Interest_All"] == before["Open_Interest_All"]
    changed = [a for b, a in zip(text_before.split(b"\r\n"), text_after.split(b"\r\n"), strict=True) if a != b]
    assert len(changed) == 1 and b",261020,2026-10-20,054642," in changed[0]


def year_text(venue: VenueThread) -> bytes:
    with zipfile.ZipFile(io.BytesIO(get_zip(venue).content)) as archive:
        return archive.read("f_year.txt")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("cftc_fail", "oops", "cftc_fail=STATUS[:COUNT]"),
        ("cftc_fail", "200", "4xx/5xx"),
        ("cftc_truncated", "0", "times must be >= 1"),
        ("http_fail", "", "http_fail=STATUS[:COUNT]"),
        ("http_fail", "200", "4xx/5xx"),
        ("invalid_bar", "ZZZ9", "no listed future 'ZZZ9'"),
        ("cftc_revision", "054642", "cftc_revision=CODE:YYYY-MM-DD[:CONTRACTS]"),
        ("cftc_revision", "999999:2026-10-20", "unknown market code '999999'"),
        ("cftc_revision", "054642:2026-11-03", "must be published after its release"),
        ("cftc_revision", "054642:2026-10-20:0", "CONTRACTS must be in 1.."),
    ],
)
def test_bad_fault_values_are_422_naming_the_expected_form(
    venue: VenueThread, name: str, value: str, expected: str
) -> None:
    response = post_fault(venue, name, value)
    assert response.status_code == 422 and expected in response.json()["detail"]


def test_clear_switches_off_venue_and_cftc_faults_alike(venue: VenueThread) -> None:
    for name, value in [("http_delay", "3"), ("auth_failure", "1"), ("cftc_html", "")]:
        post_fault(venue, name, value)
    post_fault(venue, "clear")
    faults = venue.call(lambda v: (v.faults.http_delay_s, v.faults.auth_failure, v.cftc.fault))
    assert faults == (0.0, False, None)


def test_fault_names_cover_the_issue_list() -> None:
    wanted = {"close", "reset", "error", "stall", "pause", "slow", "corrupt", "auth_failure", "http_fail",
              "http_delay", "cftc_fail", "cftc_slow", "cftc_truncated", "cftc_corrupt", "cftc_zip_bomb",
              "invalid_bar"}  # fmt: skip
    assert wanted <= set(FAULT_NAMES)


def test_invalid_bar_reaches_live_and_historical_but_not_the_ground_truth(tmp_path: Path) -> None:
    truth = tmp_path / "truth.dbn"
    with VenueThread(fast_config(seed=14, record_path=truth)) as venue:
        future = venue.call(lambda v: next(i for i in v.model.instruments if i.kind == "F"))
        wait_until(lambda: venue.call(lambda v: v.tape.last_key("ohlcv-1m")) is not None, "a first minute bar")
        client = live_client(venue)
        sink = Collector()
        client.add_callback(sink)
        client.subscribe(DATASET, "ohlcv-1m", ["HE.FUT"], stype_in="parent")
        client.start()
        wait_until(lambda: sink.of(SymbolMappingMsg), "the session to start streaming")
        assert post_fault(venue, "invalid_bar", future.raw_symbol).status_code == 200

        def invalid() -> list[OHLCVMsg]:
            return [b for b in sink.of(OHLCVMsg) if b.high < b.low]

        wait_until(invalid, "the invalid bar on the Live session")
        client.stop()
        client.block_for_close(timeout=30)
        [bar] = invalid()
        assert bar.instrument_id == future.instrument_id

        end = venue.call(lambda v: v.model.now_ns)
        history = historical_client(venue.info.api_key, venue.info.historical_url).timeseries.get_range(
            DATASET, bar.ts_event, end, "HE.FUT", "ohlcv-1m", stype_in="parent"
        )
        assert bytes(bar) in {bytes(r) for r in history}
        injected_at = venue.call(lambda v: v.tape.end("ohlcv-1m"))
        wait_until(
            lambda: venue.call(lambda v: v.tape.end("ohlcv-1m")) > injected_at + 10, "bars after the invalid one"
        )
        assert published_order(venue) == sorted(published_order(venue))  # Live replay bisects on it
    recorded = [r for r in db.DBNStore.from_file(truth) if isinstance(r, OHLCVMsg)]
    assert recorded and all(r.high >= r.low for r in recorded)


def published_order(venue: VenueThread) -> list[int]:
    def read(v: Venue) -> list[int]:
        return [
            v.tape.get("ohlcv-1m", i)[1].published_ns for i in range(v.tape.base("ohlcv-1m"), v.tape.end("ohlcv-1m"))
        ]

    return venue.call(read)
