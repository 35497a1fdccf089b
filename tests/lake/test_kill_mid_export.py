"""kill -9 in the middle of the lake export (a real child process) leaves every dataset whole: no partial file, no
duplicated partition, a manifest that only lists what is on disk; the next run completes it to exactly what a manual
export writes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from hydra_daemon.store.arctic import Store
from hydra_daemon.store.bitemporal_table import BitemporalTable
from hydra_daemon.store.lake import MANIFEST, export_range, export_store_due, read_manifest
from hydra_daemon.store.symbols import COT, FUTURES

PROC = Path(__file__).with_name("export_proc.py")
THROUGH = date(2026, 3, 31)
PARTITION = re.compile(r"date=\d{4}-\d{2}-\d{2}/part-0\.parquet")


def _fill(uri: str) -> None:
    """Three weeks of hourly bars and 12 weekly COT rows (one revised): 33 partitions to publish."""
    index = pd.date_range("2026-03-09", "2026-03-29 23:00", freq="h", tz="UTC", name="ts_event")
    rng = np.random.default_rng(3)
    bars = pd.DataFrame({"close": rng.normal(90, 1, len(index)), "volume": rng.integers(0, 99, len(index))}, index)
    as_of = pd.date_range("2025-12-30", periods=12, freq="7D", tz="UTC")
    with Store.open(uri, writer=True) as store:
        store.library(FUTURES).write("HE.ohlcv-1h", bars)
        table = BitemporalTable(store.library(COT), "HE.cot")
        table.record(
            pd.DataFrame({"as_of": as_of, "open_interest": np.arange(12.0)}),
            value_columns=["open_interest"],
            available_at=pd.Series(as_of + pd.Timedelta(days=3)),
            ingested_at=pd.Timestamp("2026-03-30", tz="UTC"),
        )
        table.record(
            pd.DataFrame({"as_of": as_of[:1], "open_interest": [99.0]}),
            value_columns=["open_interest"],
            available_at=pd.Timestamp("2026-03-30 12:00", tz="UTC"),
            ingested_at=pd.Timestamp("2026-03-30 12:00", tz="UTC"),
        )


def _run_until_killed(uri: str, lake_dir: Path, log: Path, published: int) -> None:
    """Start the export; SIGKILL it once it has logged `published` partitions (or let it finish)."""
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, str(PROC), uri, str(lake_dir), THROUGH.isoformat()], stderr=err)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if log.read_text().count('"lake.partition_published"') >= published:
            proc.kill()
            break
        time.sleep(0.005)
    proc.wait(30)


def _assert_whole(lake_dir: Path) -> None:
    for dataset in (lake_dir / FUTURES / "HE.ohlcv-1h", lake_dir / COT / "HE.cot"):
        if not dataset.exists():
            continue
        files = sorted(str(p.relative_to(dataset)) for p in dataset.rglob("*") if p.is_file())
        parts = [f for f in files if f != MANIFEST]
        assert all(PARTITION.fullmatch(f) for f in parts), files  # one file per day, nothing half-named
        for part in parts:
            pq.read_table(dataset / part)  # every published file is a whole Parquet file
        if MANIFEST in files:
            manifest = read_manifest(dataset)  # a whole JSON document
            assert manifest is not None
            for day, info in manifest.partitions.items():
                assert pq.read_metadata(dataset / f"date={day}" / "part-0.parquet").num_rows == info.rows


def test_kill_9_mid_export_leaves_no_partial_or_duplicated_partition(tmp_path: Path) -> None:
    uri = f"lmdb://{tmp_path / 'store'}?map_size=1GB"
    _fill(uri)
    lake_dir = tmp_path / "lake"
    for at in (12,):
        _run_until_killed(uri, lake_dir, tmp_path / f"export-{at}.log", at)
        _assert_whole(lake_dir)
    assert len(list(lake_dir.rglob("part-0.parquet"))) < 33, "the kill landed before the export finished"
    logs = [json.loads(line) for p in tmp_path.glob("export-*.log") for line in p.read_text().splitlines()]
    assert sum(entry["event"] == "lake.partition_published" for entry in logs) >= 12, "the kill landed mid-export"

    manual = tmp_path / "manual"
    with Store.open(uri, writer=False) as store:
        export_store_due(store, lake_dir, THROUGH)
        assert export_store_due(store, lake_dir, THROUGH) == []  # done: a further run has nothing to do
        export_range(store.library(FUTURES), FUTURES, "HE.ohlcv-1h", date(2026, 3, 9), THROUGH, manual)
        export_range(store.library(COT), COT, "HE.cot", date(2025, 12, 30), THROUGH, manual)
    _assert_whole(lake_dir)
    for dataset in (Path(FUTURES) / "HE.ohlcv-1h", Path(COT) / "HE.cot"):
        ours = sorted(p.relative_to(lake_dir) for p in (lake_dir / dataset).rglob("*.parquet"))
        assert ours == sorted(p.relative_to(manual) for p in (manual / dataset).rglob("*.parquet"))
        for part in ours:
            assert pq.read_table(lake_dir / part).equals(pq.read_table(manual / part)), part
        manifest = read_manifest(lake_dir / dataset)
        assert manifest is not None and manifest.watermark.pending_days == ()
        assert len(manifest.partitions) == len(ours)
