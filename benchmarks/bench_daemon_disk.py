"""The real daemon capturing the simulated venue: what does `du` of its store say, minute by minute?

Starts the simulated venue (`python -m hydra_daemon.sim`, HE + CL, real time, `--rate` market events per second,
about 70 % of them option quotes) and the real daemon (`python -m hydra_daemon.cli run`) as subprocesses; the
daemon's config is the shipped `config.toml` with only the paths, the venue's gateways and a second market (CL)
changed, so its `[storage]` cadence is the shipped one. Every `--sample-s` it prints, for the store as it stands:

- `du` of the LMDB store (each library), the rows stored (every symbol of every library: quotes, bars, definitions,
  statistics, chain rows, COT rows, features) and bytes per stored row;
- the zstd DBN of exactly the stored Databento records: the rows of every market-data symbol written back into
  Databento's binary layout (`to_dbn`, the inverse of the daemon's decoding) and compressed per symbol as one
  stream at zstd level 3 (as a Databento `.dbn.zst` file of them would be); chain rows, COT and features have no
  DBN form, so they add disk but no DBN bytes (the ratio is the stricter for it);
- the ratio of the two, and the disk cost of the rows stored since the previous sample (d-bytes / d-rows).

After the last sample it prints, per library, ArcticDB's keys by type (count, bytes) and the LMDB pages beyond them,
then stops the daemon (SIGTERM). The last line states the target: ratio at the end ≤ 2, and bytes per row of the
last minutes (the final third of the run) no higher than of the first sample. `--minutes 0.1 --sample-s 2` is the
short mode a test runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import arcticdb
import databento_dbn as dbn
import numpy as np
import pandas as pd
import zstandard

from hydra_daemon.databento.decode import LAYOUTS, layout
from hydra_daemon.sim.config import DEFAULT_API_KEY
from hydra_daemon.store.symbols import FUTURES, LIBRARIES, OPTIONS, stream_of

REPO = Path(__file__).resolve().parents[1]
CONFIG_TOML = REPO / "config.toml"
CL_MARKET = '\n[[markets]]\nname = "CL"\nfutures_root = "CL"\noptions_root = "LO"\ncftc_code = "067651"\n'
RTYPES = {
    "mbp-1": int(dbn.RType.MBP_1),
    "trades": int(dbn.RType.MBP_0),
    "definition": int(dbn.RType.INSTRUMENT_DEF),
    "statistics": int(dbn.RType.STATISTICS),
    "ohlcv-1s": 32,
    "ohlcv-1m": 33,
    "ohlcv-1h": 34,
    "ohlcv-1d": 35,
    "ohlcv-eod": 36,
}
UNDEF_TIMESTAMP = np.uint64(dbn.UNDEF_TIMESTAMP)


def to_dbn(frame: pd.DataFrame, schema: str) -> np.ndarray:
    """The stored rows of one Databento schema back in DBN's record layout (the inverse of `decode.to_frame`)."""
    spec = layout(schema)
    record_type = spec.record_type
    dtype: Any = np.dtype(record_type._dtypes)  # type: ignore[attr-defined]
    prices = set(record_type._price_fields)  # type: ignore[attr-defined]
    times = set(record_type._timestamp_fields)  # type: ignore[attr-defined]
    out: Any = np.zeros(len(frame), dtype=dtype)
    out["length"], out["rtype"] = dtype.itemsize // 4, RTYPES[schema]
    for name in dtype.names or ():
        if name in ("length", "rtype") or name.startswith("_reserved"):
            continue
        values = frame.index if name == spec.index else frame[name]
        if name in times:
            ns = pd.DatetimeIndex(values).as_unit("ns").asi8.astype(np.uint64)
            ns[pd.isna(values)] = UNDEF_TIMESTAMP
            out[name] = ns
        elif name in prices:
            floats = np.asarray(values, dtype=np.float64)
            fixed = np.round(np.nan_to_num(floats) * dbn.FIXED_PRICE_SCALE).astype(np.int64)
            fixed[np.isnan(floats)] = dbn.UNDEF_PRICE
            out[name] = fixed
        elif dtype[name].kind == "S":
            out[name] = np.char.encode(np.asarray(values, dtype=str), "utf-8")
        else:
            out[name] = np.asarray(values)
    return out


@dataclass(frozen=True)
class Sample:
    """The store at one moment: `du` per library, rows stored, their zstd DBN bytes."""

    seconds: float
    disk: dict[str, int]
    rows: int
    dbn_rows: int
    zstd_dbn: int

    @property
    def total_disk(self) -> int:
        return sum(self.disk.values())


def du_bytes(path: Path) -> int:
    """Disk blocks used under `path` (what `du` reports)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def measure(arctic: arcticdb.Arctic, root: Path, seconds: float) -> Sample:
    """Rows and DBN first, then `du`: the disk then holds at least the rows counted."""
    compressor = zstandard.ZstdCompressor(level=3)
    rows = dbn_rows = zstd_dbn = 0
    for name in [n for n in LIBRARIES if n in arctic.list_libraries()]:
        library = arctic.get_library(name)
        for symbol in library.list_symbols():
            schema = stream_of(symbol).partition(".")[2]  # quotes are stored one symbol per UTC day
            if name in (FUTURES, OPTIONS) and schema in LAYOUTS:
                frame = library.read(symbol).data
                records = to_dbn(frame, schema)
                dbn_rows += len(records)
                zstd_dbn += len(compressor.compress(records.tobytes()))
                rows += len(frame)
            else:
                rows += library.get_description(symbol).row_count
    disk = {d.name: du_bytes(d) for d in sorted(root.iterdir()) if d.is_dir()}
    return Sample(seconds, disk, rows, dbn_rows, zstd_dbn)


def daemon_config(work: Path, venue: dict[str, str]) -> Path:
    """The shipped config.toml with only paths, the venue's gateways and a second market (CL) changed."""
    text = CONFIG_TOML.read_text()
    replacements = {
        r'(?m)^state_dir = ".*"$': f'state_dir = "{work / "state"}"',
        r'(?m)^health_socket = ".*"$': f'health_socket = "{work / "health.sock"}"',
        r'(?m)^arctic_uri = "lmdb://[^?"]*': f'arctic_uri = "lmdb://{work / "arctic"}',
        r'(?m)^lake_dir = ".*"$': f'lake_dir = "{work / "lake"}"',
        r"(?m)^# live_gateway = .*$": f'live_gateway = "{venue["live_host"]}"',
        r"(?m)^# live_port = .*$": f"live_port = {venue['live_port']}",
        r"(?m)^# historical_url = .*$": f'historical_url = "{venue["historical_url"]}"',
        r'(?m)^base_url = ".*"$': f'base_url = "{venue["cftc_url"]}"',
    }
    for pattern, new in replacements.items():
        text, count = re.subn(pattern, new, text)
        if count != 1:
            raise RuntimeError(f"config.toml changed shape: {pattern!r} matched {count} times")
    path = work / "config.toml"
    path.write_text(text + CL_MARKET)
    return path


@contextlib.contextmanager
def process(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """A child process (stderr to `log`), stopped with SIGTERM (then killed) on exit."""
    with log.open("w") as stderr:
        child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=REPO, env=env)
        try:
            yield child
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def wait_for_store(arctic: arcticdb.Arctic, daemon: subprocess.Popen[str], timeout_s: float = 120.0) -> None:
    """Until the daemon stored its first option quotes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with {daemon.returncode} before storing anything")
        if OPTIONS in arctic.list_libraries() and arctic.get_library(OPTIONS).list_symbols():
            return
        time.sleep(0.5)
    raise RuntimeError(f"no options stored within {timeout_s:.0f} s")


def line(sample: Sample, previous: Sample | None) -> str:
    per_row = sample.total_disk / max(1, sample.rows)
    fields = [
        f"t={sample.seconds:.0f}s",
        f"disk_mb={sample.total_disk / 1e6:.2f}",
        f"rows={sample.rows}",
        f"bytes_per_row={per_row:.1f}",
        f"zstd_dbn_bytes_per_row={sample.zstd_dbn / max(1, sample.dbn_rows):.1f}",
        f"ratio={sample.total_disk / max(1, sample.zstd_dbn):.2f}",
    ]
    if previous is not None and sample.rows > previous.rows:
        added = (sample.total_disk - previous.total_disk) / (sample.rows - previous.rows)
        fields.append(f"interval_bytes_per_row={added:.1f}")
    fields += [f"{name}_mb={size / 1e6:.2f}" for name, size in sample.disk.items()]
    return " ".join(fields)


def key_sizes(arctic: arcticdb.Arctic, root: Path) -> list[str]:
    """Per library: ArcticDB's keys by type (count, KB) and what `du` holds beyond them (LMDB's free and part-filled
    pages: the file never shrinks, freed pages are reused)."""
    lines = []
    for name in [n for n in LIBRARIES if n in arctic.list_libraries()]:
        sizes = arctic.get_library(name).admin_tools().get_sizes()
        kept = {kind: size for kind, size in sizes.items() if size.count}
        parts = [f"{kind.name.lower()}={size.count}/{size.bytes_compressed / 1e3:.0f}KB" for kind, size in kept.items()]
        slack = du_bytes(root / name) - sum(size.bytes_compressed for size in kept.values())
        lines.append(f"keys {name}: {' '.join(parts)} lmdb_pages_beyond_keys={slack / 1e3:.0f}KB")
    return lines


def verdict(samples: list[Sample]) -> str:
    """Ratio at the end ≤ 2; bytes per row of the last third of the run ≤ those of the first sample."""
    first, last = samples[0], samples[-1]
    tail_start = next(s for s in samples if s.seconds >= last.seconds * 2 / 3)
    if tail_start is last:
        tail_start = samples[-2] if len(samples) > 1 else first
    first_cost = first.total_disk / max(1, first.rows)
    tail_rows = last.rows - tail_start.rows
    tail_cost = (last.total_disk - tail_start.total_disk) / tail_rows if tail_rows > 0 else float("inf")
    ratio = last.total_disk / max(1, last.zstd_dbn)
    ratio_ok, tail_ok = ratio <= 2.0, tail_cost <= first_cost
    return (
        f"targets ({last.seconds / 60:.1f} min): disk/zstd-DBN {ratio:.2f} <= 2 {'met' if ratio_ok else 'not met'}; "
        f"bytes/row of t>{tail_start.seconds:.0f}s {tail_cost:.1f} <= first sample's {first_cost:.1f} "
        f"{'met' if tail_ok else 'not met'};"
    )


def run(args: argparse.Namespace, work: Path) -> list[Sample]:
    venue_args = [sys.executable, "-m", "hydra_daemon.sim", "--json", "--live-port", "0", "--http-port", "0"]
    venue_args += ["--roots", "HE,CL", "--rate", str(args.rate), "--seed", "7"]
    with process(venue_args, work / "venue.log") as venue:
        assert venue.stdout is not None
        info = json.loads(venue.stdout.readline())
        config = daemon_config(work, info)
        env = {**os.environ, "DATABENTO_API_KEY": info.get("api_key", DEFAULT_API_KEY)}
        daemon_args = [sys.executable, "-m", "hydra_daemon.cli", "run", "--config", str(config)]
        with process(daemon_args, work / "daemon.log", env) as daemon:
            arctic = arcticdb.Arctic(f"lmdb://{work / 'arctic'}")
            wait_for_store(arctic, daemon)
            began = time.monotonic()
            samples: list[Sample] = []
            while (elapsed := time.monotonic() - began) < args.minutes * 60:
                time.sleep(max(0.0, (len(samples) + 1) * args.sample_s - elapsed))
                if daemon.poll() is not None:
                    raise RuntimeError(f"the daemon exited with {daemon.returncode}; see {work / 'daemon.log'}")
                samples.append(measure(arctic, work / "arctic", time.monotonic() - began))
                print(line(samples[-1], samples[-2] if len(samples) > 1 else None), flush=True)
            for text in key_sizes(arctic, work / "arctic"):
                print(text, flush=True)
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=120)
    return samples


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="wall minutes of capture after the first quote")
    parser.add_argument("--sample-s", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--rate", type=float, default=400.0, help="venue market events per second (HE + CL)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the store (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="leave the store behind (its path is printed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_daemon_disk_", dir=args.dir))
    try:
        print(f"bench_daemon_disk: {args.minutes} min, HE + CL at {args.rate:.0f} events/s, store {work}", flush=True)
        samples = run(args, work)
        print(verdict(samples), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
