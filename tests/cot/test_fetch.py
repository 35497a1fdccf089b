"""The COT fetcher against the simulated CFTC file server over real loopback HTTP, including its faults."""

from __future__ import annotations

import asyncio
import io
import re
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from hydra_daemon.config import CotConfig
from hydra_daemon.cot.fetch import CotFetcher, NotPublishedYet, TransientFetchError, UnsafeZipError
from hydra_daemon.cot.parse import parse_report
from hydra_daemon.sim.cftc_files import SimulatedCotFiles
from hydra_daemon.sim.cftc_server import CftcFiles
from hydra_daemon.sim.clock import SimClock
from hydra_daemon.sim.http_server import HttpServer
from hydra_daemon.sim.http_types import HttpResponse

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


@dataclass
class CftcSite:
    route: CftcFiles
    base_url: str
    delays: list[float]

    def fetcher(self, **overrides: object) -> CotFetcher:
        # A generous timeout: on a loaded machine an answer can take seconds; timeout tests set their own.
        settings: dict = {"base_url": self.base_url, "timeout_s": 30.0, "retries": 3} | overrides
        delays = self.delays

        async def record_sleep(seconds: float) -> None:
            delays.append(seconds)

        return CotFetcher(CotConfig(**settings), backoff_base_s=0.5, backoff_max_s=30.0, sleep=record_sleep)


@pytest.fixture
async def cftc() -> AsyncIterator[CftcSite]:
    files = SimulatedCotFiles(seed=7, first_as_of=date(2025, 11, 4))
    files.year_zip(2026, NOW)  # build (and cache) the file now, so serving it is fast even under a short timeout
    route = CftcFiles(files, SimClock(start=NOW))
    server = HttpServer("127.0.0.1", 0, [route], threaded=[route])
    await server.start()
    try:
        yield CftcSite(route, f"http://127.0.0.1:{server.port}", [])
    finally:
        await server.stop()


async def test_fetches_and_parses_the_current_year(cftc: CftcSite) -> None:
    async with cftc.fetcher() as fetcher:
        file = await fetcher.fetch_year(2026)

    rows = parse_report(file.data, source=file.url, codes={"054642"}).rows
    assert file.url == f"{cftc.base_url}/files/dea/history/fut_disagg_txt_2026.zip"
    assert file.member == "f_year.txt"
    # Friday 2026-03-20 12:00 UTC is before that day's 15:30 New York release: the newest week is 2026-03-10.
    assert rows["as_of"].max() == datetime(2026, 3, 10, tzinfo=UTC)
    assert cftc.delays == []


async def test_server_errors_are_retried_until_success(cftc: CftcSite) -> None:
    cftc.route.fail_status(500, times=2)
    async with cftc.fetcher() as fetcher:
        file = await fetcher.fetch_year(2026)

    assert file.data.startswith(b'"Market_and_Exchange_Names"')
    assert cftc.route.requests_served == 3
    assert len(cftc.delays) == 2
    assert 0.25 <= cftc.delays[0] <= 0.5 and 0.5 <= cftc.delays[1] <= 1.0


async def test_429_honours_retry_after(cftc: CftcSite) -> None:
    cftc.route.fail_status(429, times=1)
    async with cftc.fetcher() as fetcher:
        await fetcher.fetch_year(2026)

    assert cftc.delays[0] >= 1.0
    assert cftc.route.requests_served == 2


async def test_persistent_failure_names_the_url_and_gives_up(cftc: CftcSite) -> None:
    cftc.route.fail_status(503)
    async with cftc.fetcher(retries=2) as fetcher:
        with pytest.raises(TransientFetchError) as caught:
            await fetcher.fetch_year(2026)

    assert str(caught.value) == (
        f"{cftc.base_url}/files/dea/history/fut_disagg_txt_2026.zip: HTTP 503 (gave up after 3 attempts)"
    )
    assert cftc.route.requests_served == 3


async def test_html_page_means_not_published_and_is_not_retried(cftc: CftcSite) -> None:
    cftc.route.html_instead()
    async with cftc.fetcher() as fetcher:
        with pytest.raises(NotPublishedYet, match="HTML page"):
            await fetcher.fetch_year(2026)
        cftc.route.clear_faults()
        with pytest.raises(NotPublishedYet, match=re.escape("fut_disagg_txt_2027.zip")):
            await fetcher.fetch_year(2027)

    assert cftc.route.requests_served == 2
    assert cftc.delays == []


@pytest.mark.parametrize("fault", ["truncate_zip", "corrupt_zip"])
async def test_damaged_zip_is_retried_then_succeeds(cftc: CftcSite, fault: str) -> None:
    getattr(cftc.route, fault)(times=1)
    async with cftc.fetcher() as fetcher:
        file = await fetcher.fetch_year(2026)

    assert not parse_report(file.data, source=file.url).rows.empty
    assert cftc.route.requests_served == 2


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("truncate_zip", "corrupt or truncated zip"), ("corrupt_zip", "corrupt or truncated zip member f_year.txt")],
)
async def test_persistently_damaged_zip_is_a_clear_error(cftc: CftcSite, fault: str, reason: str) -> None:
    getattr(cftc.route, fault)()
    async with cftc.fetcher(retries=1) as fetcher:
        with pytest.raises(TransientFetchError, match=reason):
            await fetcher.fetch_year(2026)


async def test_zip_bomb_is_refused_by_its_declared_size(cftc: CftcSite) -> None:
    cftc.route.serve_zip_bomb(uncompressed_bytes=64 << 20)
    async with cftc.fetcher(max_uncompressed_bytes=8 << 20) as fetcher:
        with pytest.raises(UnsafeZipError, match=re.escape("declares 67108864 bytes, over cot.max_uncompressed_bytes")):
            await fetcher.fetch_year(2026)

    assert cftc.route.requests_served == 1


async def test_oversized_zip_is_refused(cftc: CftcSite) -> None:
    async with cftc.fetcher(max_zip_bytes=1000) as fetcher:
        with pytest.raises(UnsafeZipError, match=r"over the limit of 1000 \(cot.max_zip_bytes\)"):
            await fetcher.fetch_year(2026)


async def test_wrong_member_is_refused(cftc: CftcSite) -> None:
    cftc.route.wrong_member("annual.txt")
    async with cftc.fetcher() as fetcher:
        with pytest.raises(UnsafeZipError, match=re.escape("expected member 'f_year.txt', found 'annual.txt'")):
            await fetcher.fetch_year(2026)


async def test_timeout_is_retried_then_succeeds(cftc: CftcSite) -> None:
    cftc.route.slow(30.0, times=1)  # far beyond the timeout; the retry is served at once, well within it
    async with cftc.fetcher(timeout_s=2.0) as fetcher:
        file = await fetcher.fetch_year(2026)

    assert file.member == "f_year.txt"
    assert len(cftc.delays) == 1


async def test_persistent_timeout_is_a_clear_error(cftc: CftcSite) -> None:
    cftc.route.slow(3.0)
    async with cftc.fetcher(timeout_s=0.3, retries=1) as fetcher:
        with pytest.raises(TransientFetchError, match="timed out"):
            await fetcher.fetch_year(2026)


async def test_connection_refused_is_a_clear_error(cftc: CftcSite) -> None:
    async with cftc.fetcher(base_url="http://127.0.0.1:9", retries=1) as fetcher:
        with pytest.raises(TransientFetchError, match=r"127\.0\.0\.1:9/files/dea/history/.*connection failed"):
            await fetcher.fetch_year(2026)


def _lying_bomb(declared: int, actual: int) -> bytes:
    """A zip whose member declares `declared` bytes but inflates to `actual`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("f_year.txt", b" " * actual)
    payload = bytearray(buffer.getvalue())
    for offset in (22, payload.rfind(b"PK\x01\x02") + 24):  # local and central uncompressed-size fields
        payload[offset : offset + 4] = declared.to_bytes(4, "little")
    return bytes(payload)


async def test_zip_bomb_lying_about_its_size_never_inflates_past_the_declared_size(
    scripted_server: tuple[Any, str],
) -> None:
    files, base_url = scripted_server
    files.set(
        "/files/dea/history/fut_disagg_txt_2026.zip",
        HttpResponse(200, _lying_bomb(declared=1000, actual=32 << 20), "application/zip"),
    )
    config = CotConfig(base_url=base_url, retries=0, max_uncompressed_bytes=1 << 20)
    async with CotFetcher(config) as fetcher:
        with pytest.raises(TransientFetchError, match=re.escape("corrupt or truncated zip member f_year.txt")):
            await fetcher.fetch_year(2026)


@asynccontextmanager
async def _raw_server(handler: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> AsyncIterator[str]:
    """A bare loopback HTTP server whose answers `handler` writes by hand (no Content-Length, slow drips)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            await handler(writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def test_body_without_content_length_is_cut_off_past_the_limit() -> None:
    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nConnection: close\r\n\r\nPK\x03\x04")
        for _ in range(64):
            writer.write(b"\0" * 65536)
            await writer.drain()

    async with (
        _raw_server(endless) as base_url,
        CotFetcher(CotConfig(base_url=base_url, retries=0, max_zip_bytes=200_000)) as fetcher,
    ):
        with pytest.raises(UnsafeZipError, match=re.escape("exceeds the limit of 200000 bytes (cot.max_zip_bytes)")):
            await fetcher.fetch_year(2026)


async def test_slow_drip_download_hits_the_attempt_deadline() -> None:
    async def drip(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100):
            writer.write(b"P")
            await writer.drain()
            await asyncio.sleep(0.1)

    async with (
        _raw_server(drip) as base_url,
        CotFetcher(CotConfig(base_url=base_url, retries=0, timeout_s=0.3)) as fetcher,
    ):
        with pytest.raises(TransientFetchError, match=re.escape("timed out (download took over 1.2 s)")):
            await fetcher.fetch_year(2026)
