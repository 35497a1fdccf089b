"""The CFTC zip reader on hostile zips: every damaged, encrypted or exotic zip is a `CotFetchError`, never another
exception, and nothing inflates past the limit."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_daemon.cot.fetch import CotFetchError, TransientFetchError, UnsafeZipError, extract_member

URL = "http://cftc.test/f.zip"
MEMBER = "f_year.txt"
TEXT = b'"Market_and_Exchange_Names","CFTC_Contract_Market_Code"\r\n' + b'"LEAN HOGS","054642"\r\n' * 200
METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
LIMIT = 64 * 1024


def _zip(method: int, text: bytes = TEXT) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.writestr(MEMBER, text)
    return buffer.getvalue()


def _patch_both_headers(payload: bytes, local_offset: int, central_offset: int, fmt: str, value: int) -> bytes:
    """Set one field in the local file header and the central directory entry (offsets relative to each)."""
    data = bytearray(payload)
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into(fmt, data, local + local_offset, value)
    struct.pack_into(fmt, data, central + central_offset, value)
    return bytes(data)


def _encrypted(payload: bytes) -> bytes:
    return _patch_both_headers(payload, 6, 8, "<H", 0x1)


def _unknown_method(payload: bytes) -> bytes:
    return _patch_both_headers(payload, 8, 10, "<H", 99)


def _future_version(payload: bytes) -> bytes:
    return _patch_both_headers(payload, 4, 6, "<H", 90)


def _bad_central_offset(payload: bytes) -> bytes:
    data = bytearray(payload)
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<I", data, end + 16, len(data) * 4)  # central directory "after" the end: negative seek
    return bytes(data)


def _corrupt_body(payload: bytes) -> bytes:
    data = bytearray(payload)
    start = data.find(b"PK\x03\x04") + 30 + len(MEMBER)
    for i in range(start + 4, start + 40):
        data[i] ^= 0x5A
    return bytes(data)


@pytest.mark.parametrize(
    ("damage", "error", "reason"),
    [
        (_encrypted, UnsafeZipError, "zip feature we do not read"),
        (_unknown_method, UnsafeZipError, "zip feature we do not read"),
        (_future_version, UnsafeZipError, "zip feature we do not read"),
        (_bad_central_offset, TransientFetchError, "corrupt or truncated zip"),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_exotic_or_damaged_zips_are_fetch_errors(method: int, damage: object, error: type, reason: str) -> None:
    with pytest.raises(error, match=reason) as info:
        extract_member(URL, damage(_zip(method)), MEMBER, LIMIT)  # type: ignore[operator]
    assert str(info.value).startswith(URL)


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_corrupt_compressed_data_is_a_transient_error(method: int) -> None:
    with pytest.raises(TransientFetchError, match=r"corrupt or truncated zip member f_year\.txt"):
        extract_member(URL, _corrupt_body(_zip(method)), MEMBER, LIMIT)


_flips = st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=6)


@settings(max_examples=400, deadline=None)
@given(
    method=st.sampled_from(METHODS),
    flips=_flips,
    cut=st.none() | st.integers(min_value=0),
    damage=st.sampled_from([None, _encrypted, _unknown_method, _future_version, _bad_central_offset]),
)
def test_any_damaged_zip_yields_the_member_or_a_fetch_error(method: int, flips: list, cut: int | None, damage) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(damage(_zip(method)) if damage else _zip(method))
    for at, value in flips:
        data[at % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    try:
        member = extract_member(URL, bytes(data), MEMBER, LIMIT)
    except CotFetchError as exc:
        assert str(exc).startswith(URL)
        return
    assert len(member) <= LIMIT
