"""Split a raw DBN record stream (bytes, no Metadata header) into runs of same-type records, vectorised (pure).

Every DBN record starts with ``u8 length/4, u8 rtype``. Starting at a known record boundary, a run of records of one
length and type is found with one numpy comparison over the candidate boundaries ``start + k * length``: the run ends
at the first candidate whose length or rtype byte differs (every earlier candidate is a true boundary by induction).
Candidates are probed in growing windows, so interleaved types stay cheap and a long homogeneous run (mbp-1) costs a
handful of numpy calls per chunk, no per-record Python.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from hydra_daemon.errors import UserError

_FIRST_PROBE = 16
_METADATA_PREFIX = struct.Struct("<3sBI")  # b"DBN", version, metadata length


@dataclass(frozen=True)
class RecordRun:
    """`count` consecutive records of `rtype`, each `length` bytes, starting at byte `start` of the chunk."""

    rtype: int
    length: int
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.length * self.count


@dataclass(frozen=True)
class CorruptRecord:
    """A record that could not be decoded: where it started in its chunk (-1 when unknown), its header's rtype and
    declared length, why, and its first bytes (bounded). `breaks_stream`: the framing cannot be trusted past it
    (nothing after it in the chunk was decoded)."""

    offset: int
    rtype: int
    length: int
    reason: str
    raw: bytes
    breaks_stream: bool


class CorruptStream(UserError, ValueError):
    """DBN bytes (from the gateway, Historical or a file) that do not hold a decodable record where one must start;
    `offset` is where in the bytes given (-1 when unknown), `reason` what is wrong there, `record` the corrupt record
    when known (for quarantine)."""

    def __init__(self, reason: str, offset: int = -1, record: CorruptRecord | None = None) -> None:
        super().__init__(reason if offset < 0 else f"record at byte {offset}: {reason}")
        self.reason = reason
        self.offset = offset
        self.record = record


def is_panic(exc: BaseException) -> bool:
    """pyo3's `PanicException`, raised when databento_dbn panics on malformed input: a `BaseException`, so
    `except Exception` does not see it (and it cannot be imported by name)."""
    return type(exc).__name__ == "PanicException"


def split_runs(data: bytes | bytearray | memoryview) -> tuple[list[RecordRun], int]:
    """The complete records at the head of `data` as runs in stream order, and how many bytes they span (a trailing
    partial record is left for the next chunk)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    size = len(raw)
    runs: list[RecordRun] = []
    at = 0
    while at < size:
        words = int(raw[at])
        length = words * 4
        if length < 16:
            raise CorruptStream(f"declares length {length} (< the 16-byte header)", at)
        if at + length > size:
            break
        rtype = int(raw[at + 1])
        count = _run_length(raw, at, length, words, rtype)
        runs.append(RecordRun(rtype, length, at, count))
        at += length * count
    return runs, at


def _run_length(raw: np.ndarray, at: int, length: int, words: int, rtype: int) -> int:
    available = (len(raw) - at) // length
    count = 1
    window = _FIRST_PROBE
    while count < available:
        stop = min(available, count + window)
        starts = at + length * np.arange(count, stop)
        differs = (raw[starts] != words) | (raw[starts + 1] != rtype)
        if differs.any():
            return count + int(np.argmax(differs))
        count = stop
        window *= 4
    return count


def metadata_length(data: bytes | bytearray, limit: int = 1 << 30) -> int | None:
    """Bytes taken by the DBN Metadata header at the start of `data`; None while fewer bytes than that arrived;
    `CorruptStream` when it is not a DBN header or declares more than `limit` bytes (memory stays bounded)."""
    if len(data) < _METADATA_PREFIX.size:
        return None
    magic, _version, length = _METADATA_PREFIX.unpack_from(data)
    if magic != b"DBN":
        raise CorruptStream(f"the stream does not start with a DBN header (got {bytes(data[:3])!r})")
    total = _METADATA_PREFIX.size + length
    if total > limit:
        raise CorruptStream(f"the DBN header declares {length} bytes of metadata, over the limit of {limit}")
    return total if len(data) >= total else None
