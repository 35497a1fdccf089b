"""Keeping the LMDB pages a long-running process has touched out of its resident set (RSS).

LMDB maps each library's ``data.mdb`` into the process, and every page a read or a B-tree lookup touches stays in
the process's RSS until the mapping goes: over months the daemon's RSS would grow towards the size of everything it
ever read, although its heap stays flat. ArcticDB opens LMDB without ``MDB_WRITEMAP``, so the mapping is read-only
and shared (``r--s`` in ``/proc/self/maps``; writes go through ``pwrite``): its pages are clean page-cache pages.
``madvise(MADV_DONTNEED)`` on such a mapping only removes them from this process's page tables; the next access —
by any thread, even one in the middle of a read — faults the same page back in from the page cache (or the file), so
nothing is lost and readers never see different bytes. The page cache itself is the kernel's to reclaim.

Only ranges that are still the live mapping may be advised: an address range unmapped and reused for other memory
would have its contents discarded. The caller guarantees the environments stay open (`Store.release_mapped_pages`
holds the store open), and only read-only shared mappings of ``data.mdb`` files under the store's directory are
touched — never private or writable memory.

The heap has a similar tail: memory ArcticDB frees (its version cache, `Store.forget_cached_versions`) stays in the
process until glibc's ``malloc_trim`` hands the free pages back (`trim_heap`); and glibc's own defaults let it
fragment (`bound_heap`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass
from pathlib import Path

MADV_DONTNEED = 4  # <sys/mman.h> on Linux (every architecture)
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt parameters, <malloc.h>
MMAP_THRESHOLD = 128 * 1024  # glibc's initial threshold, kept instead of raised
ARENAS = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.restype = ctypes.c_int


@dataclass(frozen=True)
class Mapping:
    """One line of ``/proc/self/maps``: ``[start, end)`` mapped from ``path`` with ``permissions`` (e.g. r--s)."""

    start: int
    end: int
    permissions: str
    path: str

    @classmethod
    def parse(cls, line: str) -> Mapping | None:
        fields = line.split(maxsplit=5)
        if len(fields) < 6:
            return None  # anonymous memory: no path
        low, high = fields[0].split("-")
        return cls(int(low, 16), int(high, 16), fields[1], fields[5].rstrip("\n"))


def store_mappings(lmdb_dir: Path) -> list[Mapping]:
    """The read-only shared mappings of ``data.mdb`` files under ``lmdb_dir`` in this process. Only lines naming a
    ``data.mdb`` are parsed: the daemon maps ~1,000 regions, and parsing every line took 6 ms a call (a quarter of
    `bench_year`'s time: maintenance and the lake export release pages after every symbol and read)."""
    root = f"{os.path.realpath(lmdb_dir)}{os.sep}"
    with open("/proc/self/maps") as maps:
        found = [Mapping.parse(line) for line in maps if line.endswith("/data.mdb\n")]
    return [m for m in found if m is not None and m.permissions == "r--s" and m.path.startswith(root)]


def release_pages(mappings: list[Mapping]) -> None:
    """Drop ``mappings``' resident pages from this process (they refault from the page cache on the next access).
    The caller guarantees they are still mapped (see the module docstring)."""
    for mapping in mappings:
        if _libc.madvise(mapping.start, mapping.end - mapping.start, MADV_DONTNEED) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"madvise(MADV_DONTNEED) on {mapping.path}: {os.strerror(errno)}")


def trim_heap() -> None:
    """Return the heap's free pages to the kernel (glibc's ``malloc_trim``; nothing on a C library without it): freed
    blocks below a live one are otherwise kept by the process for good, and its RSS only ever grows."""
    trim = getattr(_libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def resident_bytes(lmdb_dir: Path) -> int:
    """Bytes of this process's RSS that are pages of the store's ``data.mdb`` mappings (from ``/proc/self/smaps``)."""
    root = f"{os.path.realpath(lmdb_dir)}{os.sep}"
    total, counting = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):
                mapping = Mapping.parse(line)
                counting = mapping is not None and mapping.path.startswith(root) and mapping.path.endswith("data.mdb")
            elif counting and head == "Rss:":
                total += int(line.split()[1]) * 1024
    return total


_ARENA_HEAP = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit: every arena but the main one lives in such aligned heaps
_HEAP_HEADER_MAX = 64  # bytes: glibc's heap_info (32 or 48 bytes by version), the arena right after it


def malloc_arenas(pid: int | str = "self") -> int:
    """glibc arenas of process ``pid`` (this one by default) besides the main one. glibc maps each extra arena's heap
    at a 64 MiB-aligned address, and an arena that outgrows it gets more heaps (adjacent ones may share one mapping);
    each heap starts with a header whose first word points to its arena, which for an arena's first heap lies just
    after that header. So the arenas are the 64 MiB-aligned addresses in writable anonymous memory whose first word
    (read from ``/proc/<pid>/mem``) points just past itself. `bound_heap` allows one; a thread that allocated before
    it was called keeps its own."""
    starts: list[int] = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) > 5 or not fields[1].startswith("rw"):
                continue  # a file or a named region ([stack], [heap]) is no arena; a reserved part holds no header
            low, high = (int(value, 16) for value in fields[0].split("-"))
            starts.extend(range(-(-low // _ARENA_HEAP) * _ARENA_HEAP, high, _ARENA_HEAP))
    arenas = 0
    with open(f"/proc/{pid}/mem", "rb") as memory:
        for start in starts:
            memory.seek(start)
            try:
                word = int.from_bytes(memory.read(8), "little")
            except OSError:
                continue  # unmapped since the listing (a heap shrunk away)
            arenas += 0 < word - start <= _HEAP_HEADER_MAX
    return arenas


def bound_heap() -> bool:
    """Keep glibc's heap from fragmenting over months (call at process start, before threads; False without glibc).

    By default glibc raises its mmap threshold to the size of every large block freed (up to 32 MB), so the decoded
    segments and frames of a compaction or a COT cycle are carved from the heap afterwards, and the small blocks
    allocated among them keep the freed space resident: measured at the production cadence (`bench_year`, 23 h
    sessions), the heap's free-but-resident part went 3 -> 100 MB in two days and RSS rose in steps at the first
    partition compaction and the first COT cycle. It also gives each of ArcticDB's threads its own arena (up to
    8 per core), each fragmenting on its own. With the threshold held at 128 KB (large blocks are mapped, and
    unmapped when freed) and two arenas, the free part stays under 12 MB (README "Memory")."""
    mallopt = getattr(_libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_ARENA_MAX, ARENAS))
