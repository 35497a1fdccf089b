"""Download CFTC disaggregated futures-only zips over HTTP with retries and hard limits, in memory.

`CotFetcher` never writes to disk and never trusts the server: the body is streamed and cut off past
`max_zip_bytes`; the zip must hold exactly the expected member; declared sizes are checked and decompression stops
past `max_uncompressed_bytes` (zip bombs lie about sizes). 5xx, 429 (honouring Retry-After), timeouts, connection
errors and damaged zips are retried with exponential backoff and jitter; an HTML page (or 404) means the file is
not published yet and raises `NotPublishedYet` without retrying. Whatever the server sends, `fetch` returns a
`CotFile` or raises a `CotFetchError`: a zip using a feature we do not read (encryption, an unknown compression
method) is an `UnsafeZipError`, any other damage (corrupt deflate/bzip2/lzma data, bad offsets) a retried
`TransientFetchError`.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import anyio
import httpx
import structlog

from hydra_daemon.backoff import Backoff
from hydra_daemon.config import CotConfig
from hydra_daemon.errors import UserError

HISTORY_FIRST_YEAR, HISTORY_LAST_YEAR = 2006, 2016
HISTORY_ZIP, HISTORY_MEMBER = "fut_disagg_txt_hist_2006_2016.zip", "F_Disagg06_16.txt"
YEAR_MEMBER = "f_year.txt"
ATTEMPT_DEADLINE_FACTOR = 4  # one attempt may take at most 4 x cot.timeout_s in total (slow-drip servers)
_CHUNK = 64 * 1024
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


class CotFetchError(UserError, RuntimeError):
    """A COT file could not be fetched; the message names the URL and what was wrong."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class NotPublishedYet(CotFetchError):
    """The server answered with an HTML page or 404 instead of the zip: the file is not (yet) published."""


class TransientFetchError(CotFetchError):
    """A failure worth retrying (5xx, 429, timeout, connection error, damaged zip); raised once retries run out."""

    def __init__(self, url: str, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(url, reason)
        self.retry_after_s = retry_after_s


class UnsafeZipError(CotFetchError):
    """The zip breaks a limit (size, member count, member name, uncompressed size); never retried."""


@dataclass(frozen=True)
class CotFile:
    """One downloaded text file: where it came from, the zip member name and its bytes."""

    url: str
    member: str
    data: bytes


def year_zip_name(year: int) -> str:
    """File name of the yearly futures-only disaggregated zip."""
    return f"fut_disagg_txt_{year}.zip"


class CotFetcher:
    """Async fetcher for `{base_url}/files/dea/history/<zip>`; one `httpx.AsyncClient` per fetcher (use as context)."""

    def __init__(
        self,
        config: CotConfig,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._config = config
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(config.timeout_s), follow_redirects=True)
        self._log = structlog.get_logger().bind(component="cot_fetch")

    async def __aenter__(self) -> CotFetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    def url_for(self, zip_name: str) -> str:
        """Full URL of one zip under the configured base URL."""
        return f"{self._config.base_url.rstrip('/')}/files/dea/history/{zip_name}"

    async def fetch_year(self, year: int) -> CotFile:
        """The yearly file (`f_year.txt`) for `year`; raises NotPublishedYet / CotFetchError subclasses."""
        return await self.fetch(year_zip_name(year), YEAR_MEMBER)

    async def fetch_history(self) -> CotFile:
        """The 2006-2016 history file (`F_Disagg06_16.txt`)."""
        return await self.fetch(HISTORY_ZIP, HISTORY_MEMBER)

    async def fetch(self, zip_name: str, member: str) -> CotFile:
        """Download `zip_name`, retrying transient failures, and return the bytes of `member`."""
        url = self.url_for(zip_name)
        attempts = self._config.retries + 1
        backoff = Backoff(self._backoff_base_s, self._backoff_max_s, jitter=(0.5, 1.0), floor_s=0.0)
        for attempt in range(1, attempts + 1):
            try:
                payload = await self._download(url)
                data = await anyio.to_thread.run_sync(
                    extract_member, url, payload, member, self._config.max_uncompressed_bytes
                )
                return CotFile(url=url, member=member, data=data)
            except TransientFetchError as retry:
                if attempt == attempts:
                    raise TransientFetchError(url, f"{retry.reason} (gave up after {attempts} attempts)") from None
                delay = self._delay(backoff.next_delay(), retry.retry_after_s)
                self._log.warning("cot_fetch_retry", url=url, reason=retry.reason, attempt=attempt, delay_s=delay)
                await self._sleep(delay)
        raise AssertionError("unreachable")

    def _delay(self, jittered: float, retry_after_s: float | None) -> float:
        """The backoff's delay, or the server's Retry-After when longer (both capped)."""
        if retry_after_s is not None:
            return min(self._backoff_max_s, max(retry_after_s, jittered))
        return jittered

    async def _download(self, url: str) -> bytes:
        deadline = self._config.timeout_s * ATTEMPT_DEADLINE_FACTOR
        try:
            with anyio.fail_after(deadline):
                async with self._client.stream("GET", url) as response:
                    _check_status(url, response)
                    return await _read_limited(url, response, self._config.max_zip_bytes)
        except httpx.TimeoutException as exc:
            raise TransientFetchError(url, f"timed out ({type(exc).__name__})") from None
        except TimeoutError:
            raise TransientFetchError(url, f"timed out (download took over {deadline:g} s)") from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise TransientFetchError(url, f"connection failed ({type(exc).__name__}: {exc})") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # too many redirects, a URL httpx cannot use
            raise CotFetchError(url, f"cannot download ({type(exc).__name__}: {exc}); check cot.base_url") from None


def _check_status(url: str, response: httpx.Response) -> None:
    status = response.status_code
    if status == 429 or status >= 500:
        raise TransientFetchError(url, f"HTTP {status}", _retry_after(response.headers.get("retry-after")))
    if status == 404:
        raise NotPublishedYet(url, "HTTP 404: not published yet")
    if status != 200:
        raise CotFetchError(url, f"unexpected HTTP {status}; check cot.base_url")
    if "html" in response.headers.get("content-type", "").lower():
        raise NotPublishedYet(url, "server answered with an HTML page instead of a zip: not published yet")


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


async def _read_limited(url: str, response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UnsafeZipError(url, f"zip is {int(declared)} bytes, over the limit of {limit} (cot.max_zip_bytes)")
    body = bytearray()
    async for chunk in response.aiter_bytes(_CHUNK):
        body.extend(chunk)
        if len(body) > limit:
            raise UnsafeZipError(url, f"zip exceeds the limit of {limit} bytes (cot.max_zip_bytes); stopped reading")
    return bytes(body)


def extract_member(url: str, payload: bytes, member: str, max_uncompressed: int) -> bytes:
    """The bytes of the single expected `member` of the zip `payload`, within `max_uncompressed` bytes."""
    head = payload[:4]
    if payload[:512].lstrip().startswith(b"<"):
        raise NotPublishedYet(url, "server sent an HTML page instead of a zip: not published yet")
    if head not in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC):
        raise TransientFetchError(url, f"not a zip file (starts with {head!r})")
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except Exception as exc:  # the zip reader fails in many ways on damaged input
        raise _zip_error(url, "zip", exc) from None
    with archive:
        info = _only_member(url, archive, member)
        if info.file_size > max_uncompressed:
            raise UnsafeZipError(
                url, f"{member} declares {info.file_size} bytes, over cot.max_uncompressed_bytes={max_uncompressed}"
            )
        return _inflate(url, archive, info, max_uncompressed)


def _only_member(url: str, archive: zipfile.ZipFile, member: str) -> zipfile.ZipInfo:
    infos = archive.infolist()
    if len(infos) != 1:
        names = ", ".join(i.filename for i in infos[:5])
        raise UnsafeZipError(url, f"expected exactly one member {member!r}, found {len(infos)} ({names})")
    if infos[0].filename != member:
        raise UnsafeZipError(url, f"expected member {member!r}, found {infos[0].filename!r}")
    return infos[0]


def _inflate(url: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    out = bytearray()
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                out.extend(chunk)
                if len(out) > limit:
                    raise UnsafeZipError(
                        url,
                        f"{info.filename} inflates past cot.max_uncompressed_bytes={limit} (declared "
                        f"{info.file_size}): zip bomb; stopped",
                    )
    except CotFetchError:
        raise
    except Exception as exc:
        raise _zip_error(url, f"zip member {info.filename}", exc) from None
    return bytes(out)


def _zip_error(url: str, what: str, exc: Exception) -> CotFetchError:
    """A zip feature we do not read (encryption, an unknown method or version) is never retried; anything else the
    zip reader raises (zlib/bz2/lzma errors, bad offsets and negative seeks, CRC mismatch, truncation) means a
    damaged download, retried."""
    detail = f"{type(exc).__name__}: {str(exc)[:200]}"
    if isinstance(exc, NotImplementedError | RuntimeError):
        return UnsafeZipError(url, f"{what} uses a zip feature we do not read ({detail})")
    return TransientFetchError(url, f"corrupt or truncated {what} ({detail})")
