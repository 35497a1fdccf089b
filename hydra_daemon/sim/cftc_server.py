"""HTTP route of the simulated cftc.gov: `GET /files/dea/history/fut_disagg_txt_{YEAR}.zip` and the 2006-2016 history.

Serves `SimulatedCotFiles` as of the simulation clock, so the current year's zip grows on the real release calendar.
A year with nothing released answers 200 with an HTML page (not a zip). Faults are switched at run time.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import re
import struct
import threading
import zipfile
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from hydra_daemon.clock import Clock
from hydra_daemon.sim.cftc_files import YEAR_MEMBER, SimulatedCotFiles
from hydra_daemon.sim.http_types import HttpRequest, HttpResponse

BASE_PATH: Final = "/files/dea/history/"
HISTORY_ZIP: Final = "fut_disagg_txt_hist_2006_2016.zip"
_YEAR_ZIP = re.compile(r"fut_disagg_txt_(\d{4})\.zip")
_ZIP_TYPE = "application/zip"
_HTML_TYPE = "text/html; charset=utf-8"
_NOT_FOUND_HTML = (
    b"<!DOCTYPE html><html><head><title>Page Not Found | CFTC</title></head>"
    b"<body><h1>Page not found</h1><p>The requested page could not be found.</p></body></html>"
)
ONE_GIB: Final = 1 << 30


class FaultKind(StrEnum):
    """What the next answers of the route look like."""

    STATUS = "status"  # an HTTP error status (5xx, 429 with Retry-After, ...)
    SLOW = "slow"  # the normal answer after `delay_s` (client timeouts)
    TRUNCATED = "truncated"  # the first half of the zip
    CORRUPT = "corrupt"  # a zip whose compressed bytes are garbled (CRC / inflate error)
    ZIP_BOMB = "zip_bomb"  # ~1 MB compressed, `uncompressed_bytes` of spaces as f_year.txt
    WRONG_MEMBER = "wrong_member"  # the right data under another member name
    HTML = "html"  # an HTML page with status 200 instead of the zip


@dataclass(frozen=True)
class Fault:
    """One switched-on fault; `remaining` None = until cleared, else the number of answers it still affects."""

    kind: FaultKind
    remaining: int | None = None
    status: int = 503
    delay_s: float = 0.0
    member: str = "annual.txt"
    uncompressed_bytes: int = ONE_GIB


class CftcFiles:
    """`Route` serving simulated CFTC disaggregated futures-only zips at the clock's current instant."""

    def __init__(self, files: SimulatedCotFiles, clock: Clock) -> None:
        self.files = files
        self.clock = clock
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self.requests_served = 0

    def respond(self, request: HttpRequest) -> HttpResponse | None:
        """Answer requests for the yearly and history zips; None for every other path."""
        name = request.path.removeprefix(BASE_PATH) if request.path.startswith(BASE_PATH) else None
        if name is None or not (name == HISTORY_ZIP or _YEAR_ZIP.fullmatch(name)):
            return None
        if request.method != "GET":
            return HttpResponse(405, b"method not allowed", "text/plain", headers={"Allow": "GET"})
        with self._lock:
            self.requests_served += 1
            fault = self._take_fault()
        if fault is not None and fault.kind is FaultKind.STATUS:
            headers = {"Retry-After": "1"} if fault.status in (429, 503) else {}
            return HttpResponse(fault.status, b"simulated failure", "text/plain", headers=headers)
        if fault is not None and fault.kind is FaultKind.HTML:
            return HttpResponse(200, _NOT_FOUND_HTML, _HTML_TYPE)
        if fault is not None and fault.kind is FaultKind.ZIP_BOMB:
            return HttpResponse(200, zip_bomb(fault.uncompressed_bytes), _ZIP_TYPE)
        return self._file_answer(name, fault)

    def fail_status(self, status: int = 503, times: int | None = None) -> None:
        """Answer `status` (e.g. 500, 503, 429 with Retry-After: 1) to the next `times` requests (None = all)."""
        if not 400 <= status <= 599:
            raise ValueError(f"fail_status needs a 4xx/5xx status, got {status}")
        self._set(Fault(FaultKind.STATUS, times, status=status))

    def slow(self, delay_s: float, times: int | None = None) -> None:
        """Stall `delay_s` seconds before each of the next answers (make it exceed the client timeout)."""
        if delay_s <= 0:
            raise ValueError(f"slow needs delay_s > 0, got {delay_s}")
        self._set(Fault(FaultKind.SLOW, times, delay_s=delay_s))

    def truncate_zip(self, times: int | None = None) -> None:
        """Serve only the first half of the zip bytes."""
        self._set(Fault(FaultKind.TRUNCATED, times))

    def corrupt_zip(self, times: int | None = None) -> None:
        """Serve a zip whose headers are intact but whose compressed data is garbled."""
        self._set(Fault(FaultKind.CORRUPT, times))

    def serve_zip_bomb(self, uncompressed_bytes: int = ONE_GIB, times: int | None = None) -> None:
        """Serve a small zip holding `f_year.txt` of `uncompressed_bytes` spaces (built once per size, cached)."""
        self._set(Fault(FaultKind.ZIP_BOMB, times, uncompressed_bytes=uncompressed_bytes))

    def wrong_member(self, member: str = "annual.txt", times: int | None = None) -> None:
        """Serve the right data under another member name."""
        self._set(Fault(FaultKind.WRONG_MEMBER, times, member=member))

    def html_instead(self, times: int | None = None) -> None:
        """Answer 200 with an HTML page instead of the zip."""
        self._set(Fault(FaultKind.HTML, times))

    def clear_faults(self) -> None:
        """Back to normal answers."""
        self._set(None)

    @property
    def fault(self) -> Fault | None:
        """The fault currently switched on, if any."""
        with self._lock:
            return self._fault

    def _set(self, fault: Fault | None) -> None:
        if fault is not None and fault.remaining is not None and fault.remaining < 1:
            raise ValueError(f"times must be >= 1 or None, got {fault.remaining}")
        with self._lock:
            self._fault = fault

    def _take_fault(self) -> Fault | None:
        fault = self._fault
        if fault is not None and fault.remaining is not None:
            left = fault.remaining - 1
            self._fault = dataclasses.replace(fault, remaining=left) if left else None
        return fault

    def _file_answer(self, name: str, fault: Fault | None) -> HttpResponse:
        now = self.clock.now()
        match = _YEAR_ZIP.fullmatch(name)
        payload = self.files.history_zip(now) if match is None else self.files.year_zip(int(match.group(1)), now)
        if payload is None:
            return HttpResponse(200, _NOT_FOUND_HTML, _HTML_TYPE)
        kind = fault.kind if fault is not None else None
        if kind is FaultKind.TRUNCATED:
            payload = payload[: len(payload) // 2]
        elif kind is FaultKind.CORRUPT:
            payload = corrupt(payload)
        elif kind is FaultKind.WRONG_MEMBER and fault is not None:
            payload = rename_member(payload, fault.member)
        delay = fault.delay_s if fault is not None and kind is FaultKind.SLOW else 0.0
        return HttpResponse(200, payload, _ZIP_TYPE, delay_s=delay)


def corrupt(payload: bytes) -> bytes:
    """Invert 64 bytes in the middle of the first member's compressed data; headers stay valid."""
    compressed_size = struct.unpack_from("<I", payload, 18)[0]
    name_length, extra_length = struct.unpack_from("<HH", payload, 26)
    data_start = 30 + name_length + extra_length
    start = data_start + max(0, compressed_size // 2 - 32)
    end = min(data_start + compressed_size, start + 64)
    garbled = bytes(b ^ 0xFF for b in payload[start:end])
    return payload[:start] + garbled + payload[end:]


def rename_member(payload: bytes, member: str) -> bytes:
    """The same single-member zip re-packed under another member name."""
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        info = archive.infolist()[0]
        data = archive.read(info)
    renamed = zipfile.ZipInfo(member, date_time=info.date_time)
    renamed.compress_type, renamed.create_system, renamed.external_attr = (
        info.compress_type,
        info.create_system,
        info.external_attr,
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(renamed, data)
    return buffer.getvalue()


@functools.lru_cache(maxsize=2)
def zip_bomb(uncompressed_bytes: int = ONE_GIB) -> bytes:
    """A valid zip: `f_year.txt` of `uncompressed_bytes` spaces in ~1/1000 of the size (1 GiB -> ~1 MiB).

    Built from one deflate block repeated (full flushes make the blocks identical), so memory stays near the output.
    """
    if not 0 < uncompressed_bytes < 1 << 32:
        raise ValueError(f"zip bomb size must be in (0, 4 GiB), got {uncompressed_bytes}")
    chunk_size = 1 << 20
    full, rest = divmod(uncompressed_bytes, chunk_size)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(b" " * chunk_size) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.compress(b" " * rest) + compressor.flush() if rest else compressor.flush()
    crc = 0
    spaces = b" " * chunk_size
    for _ in range(full):
        crc = zlib.crc32(spaces, crc)
    crc = zlib.crc32(b" " * rest, crc)
    compressed = block * full + tail
    return _single_member_zip(YEAR_MEMBER.encode(), compressed, crc, uncompressed_bytes)


def _single_member_zip(name: bytes, compressed: bytes, crc: int, size: int) -> bytes:
    dos_time, dos_date = 0, (2020 - 1980) << 9 | 1 << 5 | 1
    common = struct.pack("<HHHHHIII", 20, 0, 8, dos_time, dos_date, crc, len(compressed), size)
    local = struct.pack("<I", 0x04034B50) + common + struct.pack("<HH", len(name), 0) + name
    central = (
        struct.pack("<IH", 0x02014B50, 3 << 8 | 20)
        + common
        + struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0o100644 << 16, 0)
        + name
    )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(compressed), 0)
    return local + compressed + central + end
