"""Ingest throughput: the bare `databento.Live` client discarding records vs the full options pipeline committing
to ArcticDB (LMDB), both replaying the same mbp-1 tape from the simulated venue. Not a test; prints numbers.

The venue runs in a child process on a silent (weekend) market whose tape is pre-filled with N quotes, so a replay
(``start=0``) streams as fast as the gateway can send: the consumer side is what saturates. Each path reports two
rates:

- end to end: all records / (subscribe .. last record delivered (bare) or committed (pipelines)), which includes
  connecting and, for the pipelines, the writer's flush interval after the last record;
- sustained: the records between 10 % and 90 % of the tape / the time between those two points (delivered for the
  bare client, committed watermark for the options pipeline): the steady rate, without start-up and tail latency.

The measurements alternate `ROUNDS` times in one process run and the best of each is printed, with every run,
because the 2-core machine is shared (the venue itself takes about a core while it streams).

    uv run python benchmarks/bench_ingest.py [N] [ROUNDS]
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import threading
import time
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio
import databento as db
import numpy as np
from databento_dbn import MBP1Msg

from hydra_daemon.capture.commit import MarketRecords
from hydra_daemon.config import parse_config
from hydra_daemon.databento.live_stream import LiveSettings, LiveStream, StreamSpec
from hydra_daemon.ingest import Idle, PipelineStats
from hydra_daemon.options.pipeline import OptionsIngestPipeline
from hydra_daemon.secrets import ApiKey
from hydra_daemon.sim.config import LEAN_HOGS, MarketConfig
from hydra_daemon.sim.instruments import definition_record
from hydra_daemon.sim.market import Emission
from hydra_daemon.sim.venue import Venue, VenueConfig, VenueThread
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.symbols import OPTIONS
from hydra_daemon.store.uri import default_lmdb_uri
from hydra_daemon.store.writer import StreamWriter

SATURDAY = datetime(2026, 11, 7, 12, 0, tzinfo=UTC)  # no trading: the model adds nothing to the tape
SCHEMAS = ("definition", "mbp-1", "statistics")
PARENTS = ["HE.OPT", "HE.FUT"]
ROUNDS = 3
"""The three measurements alternate this many times; the best of each is reported (the machine is shared)."""


def _fill_tape(venue: Venue, quotes: int) -> dict[str, Any]:
    """Definitions of every HE instrument, then `quotes` mbp-1 records (70 % options, 30 % futures)."""
    start = venue.model.start_ns - 3600 * 1_000_000_000
    instruments = venue.model.instruments
    venue.tape.append(
        Emission("definition", start, i.instrument_id, bytes(definition_record(i, start, start))) for i in instruments
    )
    options = np.array([i.instrument_id for i in instruments if i.kind != "F"], dtype=np.uint32)
    futures = np.array([i.instrument_id for i in instruments if i.kind == "F"], dtype=np.uint32)
    rng = np.random.default_rng(1)
    ids = np.where(rng.random(quotes) < 0.7, rng.choice(options, quotes), rng.choice(futures, quotes))
    ids[-1] = options[0]
    rows = np.zeros(quotes, dtype=np.dtype(MBP1Msg._dtypes))
    ts = start + 1_000 + np.arange(quotes, dtype=np.uint64) * 1_000
    rows["length"], rows["rtype"], rows["publisher_id"], rows["instrument_id"] = 20, 1, 1, ids
    rows["ts_event"], rows["ts_recv"], rows["sequence"] = ts - 500, ts, np.arange(quotes)
    mid = rng.integers(1_000, 9_000, quotes) * 25_000_000
    rows["price"], rows["size"], rows["action"], rows["side"] = mid - 25_000_000, 5, b"M", b"B"
    rows["bid_px_00"], rows["ask_px_00"], rows["bid_sz_00"], rows["ask_sz_00"] = (
        mid - 25_000_000,
        mid + 25_000_000,
        5,
        7,
    )
    rows["bid_ct_00"], rows["ask_ct_00"], rows["flags"] = 1, 1, 128
    venue.tape.append(Emission("mbp-1", int(t), int(i), row.tobytes()) for t, i, row in zip(ts, ids, rows, strict=True))
    return {
        "records": quotes + len(instruments),
        "last_option_ts": int(ts[-1]),
        "window_ts": (int(ts[quotes // 10]), int(ts[quotes * 9 // 10])),
        "window_records": quotes * 9 // 10 - quotes // 10,
    }


def serve_venue(quotes: int, conn: Connection) -> None:
    """Child process: a silent venue with a pre-filled tape; sends its info, runs until told to stop."""
    market = MarketConfig(seed=1, products=(LEAN_HOGS,), start=SATURDAY, speed=1.0)
    with VenueThread(VenueConfig(market=market, replay_window_s=1e9, history_s=1e9)) as venue:
        filled = venue.call(lambda v: _fill_tape(v, quotes))
        conn.send({**venue.info.as_dict(), **filled})
        conn.recv()


@dataclass(frozen=True)
class Rates:
    """records/s over a whole run, and over the 10 %..90 % window of the tape."""

    end_to_end: float
    sustained: float


class _Window:
    """Times at which a run reached 10 % and 90 % of the tape."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def rates(self, records: int, window_records: int, started: float, ended: float) -> Rates:
        low, high = self.times[0], self.times[1]
        return Rates(records / (ended - started), window_records / (high - low))


def bench_bare_client(info: dict[str, Any]) -> Rates:
    """A Live client whose callback only counts, replaying the whole tape."""
    done = threading.Event()
    total = info["records"]
    marks = [total // 10, total * 9 // 10, total]
    window = _Window()
    count = 0
    next_mark = marks[0]

    def discard(record: Any) -> None:
        nonlocal count, next_mark
        count += 1
        if count == next_mark:
            window.times.append(time.perf_counter())
            if len(window.times) == len(marks):
                done.set()
            else:
                next_mark = marks[len(window.times)]

    client = db.Live(key=info["api_key"], gateway=info["live_host"], port=info["live_port"])
    client.add_callback(discard)
    started = time.perf_counter()
    for schema in SCHEMAS:
        client.subscribe(info["dataset"], schema, PARENTS, stype_in="parent", start=0)
    client.start()
    done.wait()
    client.terminate()
    return window.rates(total, marks[1] - marks[0], started, window.times[-1])


async def bench_core(info: dict[str, Any], state_dir: Path) -> Rates:
    """The streaming core alone (LiveStream + MarketRecords/StreamWriter into ``options``), rows handed to the
    writer."""
    total = info["records"]
    window = _Window()
    with Store.open(default_lmdb_uri(state_dir), writer=True) as store:
        records = MarketRecords(store, StreamWriter(store), OPTIONS, ["HE"])
        settings = LiveSettings(ApiKey(info["api_key"]), info["dataset"], info["live_host"], info["live_port"])
        spec = StreamSpec(SCHEMAS, {p: "HE" for p in PARENTS})
        stream = LiveStream(settings, spec, lambda schema: records.resume_starts(schema, SCHEMAS), PipelineStats())
        started, rows = time.perf_counter(), 0
        async with aclosing(stream.batches()) as batches:
            async for batch in batches:
                if not isinstance(batch, Idle):
                    rows += batch.rows
                    await anyio.to_thread.run_sync(records.add, batch.frames)
                await anyio.to_thread.run_sync(records.flush_due)
                for mark in (total // 10, total * 9 // 10)[len(window.times) :]:
                    if rows >= mark:
                        window.times.append(time.perf_counter())
                if rows >= total:
                    break
        await anyio.to_thread.run_sync(records.flush_all)
        return window.rates(rows, total * 8 // 10, started, time.perf_counter())


async def bench_pipeline(info: dict[str, Any], state_dir: Path) -> Rates:
    """The options pipeline (chains kept, option records stored), from connect until the last quote is committed
    to ArcticDB; the window is timed on the committed mbp-1 watermark."""
    config = parse_config(
        {
            "state_dir": str(state_dir),
            "storage": {"arctic_uri": default_lmdb_uri(state_dir)},
            "databento": {"live_gateway": info["live_host"], "live_port": info["live_port"]},
            "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
        }
    )
    window = _Window()
    with Store.open(config.storage.arctic_uri, writer=True) as store:
        pipeline = OptionsIngestPipeline(config, store, ApiKey(info["api_key"]))
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            group.start_soon(pipeline.run)
            while True:
                # in a worker thread: the writer holds its lock during an append, the event loop must not wait
                mark = await anyio.to_thread.run_sync(pipeline.watermark, "HE", "mbp-1")
                committed = -1 if mark is None else mark.ts_ns
                for edge in info["window_ts"][len(window.times) :]:
                    if committed >= edge:
                        window.times.append(time.perf_counter())
                if committed >= info["last_option_ts"]:
                    break
                await anyio.sleep(0.01)
            ended = time.perf_counter()
            group.cancel_scope.cancel()
    return window.rates(info["records"], info["window_records"], started, ended)


def _report(name: str, runs: list[Rates], bare: Rates | None) -> str:
    best = Rates(max(r.end_to_end for r in runs), max(r.sustained for r in runs))
    line = (
        f"{name:<38} end-to-end {best.end_to_end:>9,.0f}/s  sustained {best.sustained:>9,.0f}/s"
        f"  [runs e2e: {', '.join(f'{r.end_to_end:,.0f}' for r in runs)};"
        f" sustained: {', '.join(f'{r.sustained:,.0f}' for r in runs)}]"
    )
    if bare is not None:
        line += f"\n{'':<38} ratio to bare: end-to-end {best.end_to_end / bare.end_to_end:.2f}"
        line += f"  sustained {best.sustained / bare.sustained:.2f}"
    return line


def main() -> None:
    quotes = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else ROUNDS
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=serve_venue, args=(quotes, theirs), daemon=True)
    child.start()
    info = ours.recv()
    rates: dict[str, list[Rates]] = {"bare": [], "core": [], "options": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(rounds):
                rates["bare"].append(bench_bare_client(info))
                rates["core"].append(anyio.run(bench_core, info, Path(tmp) / f"core{round_}"))
                rates["options"].append(anyio.run(bench_pipeline, info, Path(tmp) / f"options{round_}"))
    finally:
        ours.send("stop")
        child.join(timeout=30)
    bare = Rates(max(r.end_to_end for r in rates["bare"]), max(r.sustained for r in rates["bare"]))
    print(f"records replayed per run: {info['records']:,}; best of {rounds} alternating runs in this process")
    print("end-to-end = all records / (subscribe .. last record delivered or committed);")
    print("sustained = records between 10 % and 90 % of the tape / time between those points")
    print(_report("bare Live client (callback discards)", rates["bare"], None))
    print(_report("streaming core + StreamWriter", rates["core"], bare))
    print(_report("options pipeline -> ArcticDB (LMDB)", rates["options"], bare))
    print("target: options pipeline sustained ratio >= 0.8")


if __name__ == "__main__":
    main()
