"""The simulated cftc.gov route: zips on the sim clock, HTML for unpublished years, run-time faults, over real HTTP."""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import httpx
import pytest

from hydra_daemon.sim.cftc_files import SimulatedCotFiles
from hydra_daemon.sim.cftc_server import BASE_PATH, CftcFiles, FaultKind, zip_bomb
from hydra_daemon.sim.clock import SimClock
from hydra_daemon.sim.http_server import HttpServer
from hydra_daemon.sim.http_types import HttpRequest, HttpResponse

FROZEN = 1e-9  # SimClock speed: one wall second is a nanosecond of simulation time
Q1_2021 = datetime(2021, 3, 20, tzinfo=UTC)
YEAR_2021 = f"{BASE_PATH}fut_disagg_txt_2021.zip"


def frozen_clock(at: datetime) -> SimClock:
    return SimClock(start=at, speed=FROZEN)


@pytest.fixture(scope="module")
def files() -> SimulatedCotFiles:
    return SimulatedCotFiles(seed=9, first_as_of=date(2020, 11, 3))


@pytest.fixture
def route(files: SimulatedCotFiles) -> CftcFiles:
    return CftcFiles(files, frozen_clock(Q1_2021))


@pytest.fixture
async def base_url(route: CftcFiles) -> AsyncIterator[str]:
    server = HttpServer("127.0.0.1", 0, [route], threaded=[route])
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


def get(route: CftcFiles, path: str = YEAR_2021, method: str = "GET") -> HttpResponse:
    response = route.respond(HttpRequest(method=method, path=path))
    assert response is not None
    return response


def member_names(payload: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        return archive.namelist()


def read_member(payload: bytes, member: str = "f_year.txt") -> bytes:
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        return archive.read(member)


@pytest.mark.parametrize(
    "path",
    [
        "/files/dea/history/com_disagg_txt_2021.zip",
        "/files/dea/history/fut_disagg_txt_21.zip",
        "/files/dea/history/fut_disagg_txt_2021.zip/x",
        "/v0/timeseries.get_range",
        "/",
    ],
)
def test_paths_it_does_not_own_are_left_to_other_routes(route: CftcFiles, path: str) -> None:
    assert route.respond(HttpRequest(method="GET", path=path)) is None


def test_only_get_is_allowed(route: CftcFiles) -> None:
    assert get(route, method="POST").status == 405


async def test_year_zip_over_http_is_the_generated_file(files: SimulatedCotFiles, base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.get(YEAR_2021)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.content == files.year_zip(2021, Q1_2021)
    assert read_member(response.content).count(b",210316,2021-03-16,") == len(files.markets)


@pytest.mark.parametrize("year", [2022, 2099])
async def test_unpublished_year_answers_html_with_200(base_url: str, year: int) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.get(f"{BASE_PATH}fut_disagg_txt_{year}.zip")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.content.startswith(b"<!DOCTYPE html>")
    assert not zipfile.is_zipfile(io.BytesIO(response.content))


def test_history_zip_has_its_own_member() -> None:
    files = SimulatedCotFiles(seed=9, first_as_of=date(2016, 12, 6))
    response = get(CftcFiles(files, frozen_clock(Q1_2021)), f"{BASE_PATH}fut_disagg_txt_hist_2006_2016.zip")
    assert member_names(response.body) == ["F_Disagg06_16.txt"]
    assert read_member(response.body, "F_Disagg06_16.txt").count(b"\r\n") == 1 + 4 * len(files.markets)


def test_file_grows_as_the_clock_passes_release_times(route: CftcFiles) -> None:
    release = datetime(2021, 3, 19, 19, 30, tzinfo=UTC)  # as_of Tue 2021-03-16, EDT from Mar 14
    route.clock = frozen_clock(release.replace(minute=29))
    before = read_member(get(route).body)
    route.clock = frozen_clock(release)
    after = read_member(get(route).body)
    assert b",210316,2021-03-16," not in before
    assert after.count(b"\r\n") == before.count(b"\r\n") + len(route.files.markets)
    route.clock = frozen_clock(datetime(2021, 1, 8, 20, 29, tzinfo=UTC))  # first 2021 week released 20:30 UTC
    assert get(route).content_type.startswith("text/html")


def test_revision_is_served_once_published() -> None:
    files = SimulatedCotFiles(seed=9, first_as_of=date(2021, 1, 5))
    route = CftcFiles(files, frozen_clock(Q1_2021))
    published = datetime(2021, 3, 25, 14, tzinfo=UTC)
    row = files.record("057642", date(2021, 3, 2), published)
    new_value = int(str(row["M_Money_Positions_Long_Old"])) - 1
    other_long = int(str(row["Other_Rept_Positions_Long_Old"])) + 1
    changes = {"M_Money_Positions_Long_Old": new_value, "Other_Rept_Positions_Long_Old": other_long}
    files.revise("057642", date(2021, 3, 2), changes, published)
    before = read_member(get(route).body)
    route.clock = frozen_clock(published)
    after = read_member(get(route).body)
    changed = [(b, a) for b, a in zip(before.split(b"\r\n"), after.split(b"\r\n"), strict=True) if a != b]
    assert len(changed) == 1
    assert b",210302,2021-03-02,057642," in changed[0][1]
    assert f"{new_value:8d}".encode() in changed[0][1]


def test_status_fault_for_a_number_of_requests(route: CftcFiles) -> None:
    route.fail_status(503, times=2)
    first, second, third = get(route), get(route), get(route)
    assert (first.status, second.status, third.status) == (503, 503, 200)
    assert first.headers["Retry-After"] == "1"
    assert route.fault is None
    assert route.requests_served == 3


def test_429_until_cleared(route: CftcFiles) -> None:
    route.fail_status(429)
    assert [get(route).status for _ in range(3)] == [429, 429, 429]
    assert get(route).headers == {"Retry-After": "1"}
    route.clear_faults()
    assert get(route).status == 200


def test_500_has_no_retry_after(route: CftcFiles) -> None:
    route.fail_status(500, times=1)
    response = get(route)
    assert (response.status, dict(response.headers)) == (500, {})


def test_bad_fault_arguments_rejected(route: CftcFiles) -> None:
    with pytest.raises(ValueError, match="4xx/5xx"):
        route.fail_status(200)
    with pytest.raises(ValueError, match="delay_s > 0"):
        route.slow(0)
    with pytest.raises(ValueError, match="times must be >= 1"):
        route.truncate_zip(times=0)


async def test_slow_answer_times_the_client_out(route: CftcFiles, base_url: str) -> None:
    route.slow(delay_s=5.0, times=1)
    async with httpx.AsyncClient(base_url=base_url, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(YEAR_2021)
        assert (await client.get(YEAR_2021)).status_code == 200


def test_slow_answer_carries_the_normal_body(route: CftcFiles, files: SimulatedCotFiles) -> None:
    route.slow(delay_s=2.5)
    response = get(route)
    assert response.delay_s == 2.5
    assert response.body == files.year_zip(2021, Q1_2021)


def test_truncated_zip_is_not_a_zip(route: CftcFiles) -> None:
    route.truncate_zip(times=1)
    with pytest.raises(zipfile.BadZipFile):
        member_names(get(route).body)
    assert member_names(get(route).body) == ["f_year.txt"]


def test_corrupt_zip_opens_but_fails_to_extract(route: CftcFiles) -> None:
    route.corrupt_zip()
    body = get(route).body
    assert member_names(body) == ["f_year.txt"]
    with pytest.raises((zipfile.BadZipFile, zlib.error)):
        read_member(body)


async def test_zip_bomb_is_small_on_the_wire_and_huge_inside(route: CftcFiles, base_url: str) -> None:
    route.serve_zip_bomb()
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.get(YEAR_2021)
    assert response.status_code == 200
    assert len(response.content) < 2 * 2**20
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        (info,) = archive.infolist()
        assert (info.filename, info.file_size) == ("f_year.txt", 2**30)
        with archive.open(info) as member:
            assert member.read(4096) == b" " * 4096


def test_small_zip_bomb_inflates_to_exactly_its_size() -> None:
    payload = zip_bomb(3 * 2**20 + 17)
    assert read_member(payload) == b" " * (3 * 2**20 + 17)


def test_wrong_member_name_carries_the_same_data(route: CftcFiles, files: SimulatedCotFiles) -> None:
    route.wrong_member("annual.txt")
    body = get(route).body
    assert member_names(body) == ["annual.txt"]
    assert read_member(body, "annual.txt") == files.year_text(2021, Q1_2021)


def test_html_instead_of_zip(route: CftcFiles) -> None:
    route.html_instead(times=1)
    response = get(route)
    assert (response.status, response.content_type.split(";")[0]) == (200, "text/html")
    assert route.fault is None
    assert get(route).content_type == "application/zip"


def test_faults_apply_to_the_history_zip_too(route: CftcFiles) -> None:
    route.fail_status(503)
    assert get(route, f"{BASE_PATH}fut_disagg_txt_hist_2006_2016.zip").status == 503
    assert route.fault is not None and route.fault.kind is FaultKind.STATUS
