"""Ingest throughput: the bare `databento.Live` client discarding records vs the full options pipeline committing
to ArcticDB (LMDB), both replaying the same mbp-1 tape from the simulated venue. Not a test; prints numbers.

The venue runs in a child process on a silent (weekend) market whose tape is pre-filled with N quotes, so a replay
(``start=0``) streams as fast as the gateway can send: the consumer side is what saturates. The three measurements
alternate `ROUNDS` times and the best of each is printed, with every run, because the 2-core machine is shared.

    uv run python benchmarks/bench_ingest.py [N]
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import threading
import time
from contextlib import aclosing
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import anyio
import databento as db
import numpy as np
from databento_dbn import MBP1Msg

from hydra_daemon.config import parse_config
from hydra_daemon.pipelines.base import PipelineStats
from hydra_daemon.pipelines.live_stream import LiveSettings, LiveStream, StreamSpec
from hydra_daemon.pipelines.options import OptionsIngestPipeline
from hydra_daemon.pipelines.stream_commit import StreamCommitter
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
ROUNDS = 2
"""The three measurements alternate this many times; the best of each is reported (the machine is shared)."""


def _fill_tape(venue: Venue, quotes: int) -> dict[str, int]:
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
    return {"records": quotes + len(instruments), "last_option_ts": int(ts[-1])}


def serve_venue(quotes: int, conn: Connection) -> None:
    """Child process: a silent venue with a pre-filled tape; sends its info, runs until told to stop."""
    market = MarketConfig(seed=1, products=(LEAN_HOGS,), start=SATURDAY, speed=1.0)
    with VenueThread(VenueConfig(market=market, replay_window_s=1e9, history_s=1e9)) as venue:
        filled = venue.call(lambda v: _fill_tape(v, quotes))
        conn.send({**venue.info.as_dict(), **filled})
        conn.recv()


def bench_bare_client(info: dict[str, Any]) -> float:
    """Records/s of a Live client whose callback only counts, replaying the whole tape."""
    done = threading.Event()
    count = 0
    target = info["records"]

    def discard(record: Any) -> None:
        nonlocal count
        count += 1
        if count >= target:
            done.set()

    client = db.Live(key=info["api_key"], gateway=info["live_host"], port=info["live_port"])
    client.add_callback(discard)
    started = time.perf_counter()
    for schema in SCHEMAS:
        client.subscribe(info["dataset"], schema, PARENTS, stype_in="parent", start=0)
    client.start()
    done.wait()
    elapsed = time.perf_counter() - started
    client.terminate()
    return target / elapsed


async def bench_core(info: dict[str, Any], state_dir: Path) -> float:
    """Records/s of the streaming core alone (LiveStream + StreamCommitter/StreamWriter into ``options``)."""
    with Store.open(default_lmdb_uri(state_dir), writer=True) as store:
        committer = StreamCommitter(StreamWriter(store), OPTIONS, ["HE"])
        settings = LiveSettings(ApiKey(info["api_key"]), info["dataset"], info["live_host"], info["live_port"])
        stream = LiveStream(
            settings, StreamSpec(SCHEMAS, {p: "HE" for p in PARENTS}), committer.resume_ns, PipelineStats()
        )
        started, rows = time.perf_counter(), 0
        async with aclosing(stream.batches()) as batches:
            async for batch in batches:
                rows += batch.rows
                await anyio.to_thread.run_sync(committer.add, batch.frames)
                await anyio.to_thread.run_sync(committer.flush_due)
                if rows >= info["records"]:
                    break
        await anyio.to_thread.run_sync(committer.flush_all)
        return rows / (time.perf_counter() - started)


async def bench_pipeline(info: dict[str, Any], state_dir: Path) -> float:
    """Records/s of the options pipeline from connect until the last quote is committed to ArcticDB."""
    config = parse_config(
        {
            "state_dir": str(state_dir),
            "storage": {"arctic_uri": default_lmdb_uri(state_dir)},
            "databento": {"live_gateway": info["live_host"], "live_port": info["live_port"]},
            "markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}],
        }
    )
    with Store.open(config.storage.arctic_uri, writer=True) as store:
        pipeline = OptionsIngestPipeline(config, store, ApiKey(info["api_key"]))
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            group.start_soon(pipeline.run)
            while True:
                mark = pipeline.watermark("HE", "mbp-1")
                if mark is not None and mark.ts_ns >= info["last_option_ts"]:
                    break
                await anyio.sleep(0.01)
            elapsed = time.perf_counter() - started
            group.cancel_scope.cancel()
    return info["records"] / elapsed


def main() -> None:
    quotes = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=serve_venue, args=(quotes, theirs), daemon=True)
    child.start()
    info = ours.recv()
    rates: dict[str, list[float]] = {"bare": [], "core": [], "options": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(ROUNDS):
                rates["bare"].append(bench_bare_client(info))
                rates["core"].append(anyio.run(bench_core, info, Path(tmp) / f"core{round_}"))
                rates["options"].append(anyio.run(bench_pipeline, info, Path(tmp) / f"options{round_}"))
    finally:
        ours.send("stop")
        child.join(timeout=30)
    bare, core, full = (max(rates[name]) for name in ("bare", "core", "options"))
    runs = {name: ", ".join(f"{rate:,.0f}" for rate in values) for name, values in rates.items()}
    print(f"records replayed per run: {info['records']:,}; best of {ROUNDS} alternating runs (all runs in brackets)")
    print(f"bare Live client (discard):          {bare:>10,.0f} records/s  [{runs['bare']}]")
    print(f"streaming core + StreamWriter:       {core:>10,.0f} records/s  [{runs['core']}]  ratio {core / bare:.2f}")
    print(
        f"options pipeline -> ArcticDB (LMDB): {full:>10,.0f} records/s  [{runs['options']}]  ratio {full / bare:.2f}"
    )
    print("target ratio >= 0.8")


if __name__ == "__main__":
    main()
