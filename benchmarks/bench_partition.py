"""Quote append latency against the history already stored: one symbol per market vs one symbol per UTC day.

Every ArcticDB append writes a new index key listing every data segment of its symbol, so with all of a market's
quotes in one symbol (the previous layout) an append costs more with every day stored; a year of mbp-1 at 140
quotes/s over 23 h sessions is ~29k segments of 100k rows. In day partitions (`store.partitions`) an append only
indexes its own day's segments.

For each history size N (segments), in one run and one LMDB store, the real `StreamWriter` appends `--appends`
quote flushes of `--rows` rows to: ``HE.quotes``, one symbol holding N segments (the previous layout: a name that is
not partitioned), and ``HE.mbp-1``, whose N segments of history are spread over earlier day partitions of
`SEGMENTS_PER_DAY` segments each while today's partition holds half a day. It prints p50/p99 of each and their ratio.
The library is created with segments of `ROWS_PER_SEGMENT` rows (the only change from production) so the history
can be written at once: an index entry costs the same whether its segment holds 1k or 100k rows, and 30k segments of
100k rows would not fit here. The appends (one segment each, as in production) go through the real `StreamWriter`.
`--sizes 50 200 --appends 10` is the short mode a test runs; timings are printed, never asserted. Measured (ext4,
2 cores shared with other work, p50 / p99 ms): one symbol 4.7 / 32.2 at 100 segments, 19.1 / 33.3 at 10k,
50.0 / 107 at 30k (a year); day partitions 3.8 / 22.0, 3.3 / 10.6, 4.0 / 17.0.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import arcticdb
import numpy as np
import pandas as pd
import structlog
from arcticdb.version_store.library import Library

from hydra_daemon.store import arctic
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.symbols import OPTIONS, partition_symbol
from hydra_daemon.store.watermark import Watermark
from hydra_daemon.store.writer import StreamWriter

SEGMENTS_PER_DAY = 116
"""A compacted day of one market's quotes: 140/s x 23 h = 11.6 M rows in segments of 100k."""
ROWS_PER_SEGMENT = 1_000
KEYS = ("sequence",)
TODAY = pd.Timestamp("2026-06-01", tz="UTC")


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float


def quotes(first: int, count: int, start: pd.Timestamp, step_ns: int) -> pd.DataFrame:
    """`count` quote-like rows from sequence `first`, `step_ns` apart from `start`."""
    seq = np.arange(first, first + count, dtype="int64")
    index = pd.DatetimeIndex(start.value + (seq - first) * step_ns, tz="UTC", name="ts_recv")
    return pd.DataFrame({"sequence": seq, "bid_px_00": seq * 0.25, "ask_px_00": seq * 0.25 + 0.05}, index=index)


def build(library: Library, symbol: str, segments: int, start: pd.Timestamp, span: pd.Timedelta) -> None:
    """`symbol` holding `segments` segments within [start, start + span), the watermark on its version as the
    writer leaves it."""
    rows = segments * ROWS_PER_SEGMENT
    frame = quotes(0, rows, start, int(span.value // rows))
    mark = Watermark(int(frame.index.asi8[-1]), {f"[{rows - 1}]": 1})
    library.write(symbol, frame, metadata=mark.to_metadata(KEYS))


def appends(store: Store, stream: str, count: int, rows: int) -> Latency:
    """`count` flushes of `rows` rows through the real writer, after what `stream` holds."""
    writer = StreamWriter(store, flush_rows=rows)
    mark = writer.watermark(OPTIONS, stream)
    assert mark is not None
    start, step = pd.Timestamp(mark.ts_ns + 1_000, tz="UTC"), 1_000_000_000 // rows  # one flush a second
    samples = []
    for number in range(count):
        at = start + pd.Timedelta(seconds=number)
        writer.add(OPTIONS, stream, quotes(10**9 + number * rows, rows, at, step), KEYS)
        began = time.perf_counter()
        assert len(writer.flush_due()) == 1  # one append
        samples.append(time.perf_counter() - began)
    return Latency(float(np.percentile(samples, 50)) * 1e3, float(np.percentile(samples, 99)) * 1e3)


def history(library: Library, segments: int) -> None:
    """`segments` segments of history in each layout."""
    build(library, "HE.quotes", segments, TODAY - pd.Timedelta(days=365), pd.Timedelta(days=365))
    days = -(-segments // SEGMENTS_PER_DAY)
    for back in range(days, 0, -1):  # oldest day first
        size = min(SEGMENTS_PER_DAY, segments - (days - back) * SEGMENTS_PER_DAY)
        day = TODAY - pd.Timedelta(days=back)
        build(library, partition_symbol("HE.mbp-1", day.date()), size, day, pd.Timedelta(hours=23))
    today = partition_symbol("HE.mbp-1", TODAY.date())
    build(library, today, SEGMENTS_PER_DAY // 2, TODAY, pd.Timedelta(hours=11))  # half a day so far


def measure(root: Path, segments: int, count: int, rows: int) -> tuple[Latency, Latency]:
    """(one symbol, day partitions) latencies at `segments` segments of history."""
    with Store.open(f"lmdb://{root / f'n{segments}'}?map_size=20GB", writer=True) as store:
        history(store.library(OPTIONS), segments)
        return appends(store, "HE.quotes", count, rows), appends(store, "HE.mbp-1", count, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000, 30_000])
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--rows", type=int, default=140, help="rows per flush (140 quotes/s, 1 s flushes)")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args(argv)
    production = arctic.LIBRARY_OPTIONS
    arctic.LIBRARY_OPTIONS = arcticdb.LibraryOptions(dynamic_schema=True, rows_per_segment=ROWS_PER_SEGMENT)
    root = Path(tempfile.mkdtemp(prefix="bench_partition_", dir=args.dir))
    print(f"append of {args.rows} rows, {args.appends} appends per layout; history in segments", flush=True)
    print(
        f"{'segments':>9} | {'one symbol p50/p99 ms':>22} | {'day partitions p50/p99 ms':>26} | ratio p50, p99",
        flush=True,
    )
    try:
        for segments in args.sizes:
            whole, parted = measure(root, segments, args.appends, args.rows)
            print(
                f"{segments:>9} | {whole.p50_ms:>10.1f} / {whole.p99_ms:>9.1f} | {parted.p50_ms:>12.1f} / "
                f"{parted.p99_ms:>11.1f} | {whole.p50_ms / parted.p50_ms:.1f}x, {whole.p99_ms / parted.p99_ms:.1f}x",
                flush=True,
            )
            shutil.rmtree(root / f"n{segments}", ignore_errors=True)
    finally:
        arctic.LIBRARY_OPTIONS = production
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    sys.exit(main())
