"""A reader process reading in a loop while the writer appends (and maintenance compacts and prunes beside it): no
errors, no torn reads (whole commits only)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hydra_daemon.store.arctic import Store
from hydra_daemon.store.maintenance import Maintenance, MaintenancePolicy, MaintenanceReport
from hydra_daemon.store.symbols import FUTURES, partition_symbol
from hydra_daemon.store.writer import StreamWriter
from tests.helpers import wait_until

PROCS = Path(__file__).with_name("store_procs.py")
SYMBOL = "HE.mbp-1"
PARTITION = partition_symbol(SYMBOL, date(2024, 3, 1))  # where all these rows are stored
BATCH_ROWS = 50
BATCHES = 60


def _batch(number: int) -> pd.DataFrame:
    start = pd.Timestamp("2024-03-01 14:30", tz="UTC") + pd.Timedelta(seconds=number)
    index = pd.date_range(start, periods=BATCH_ROWS, freq="10ms", name="ts_event")
    seq = np.arange(number * BATCH_ROWS, (number + 1) * BATCH_ROWS)
    return pd.DataFrame({"batch": number, "seq": seq, "bid": seq * 0.25}, index=index)


def test_reader_process_sees_only_whole_commits_while_writer_appends(lmdb_uri: str, tmp_path: Path) -> None:
    stop_file = tmp_path / "stop"
    with Store.open(lmdb_uri, writer=True) as store:
        writer = StreamWriter(store, flush_rows=BATCH_ROWS, flush_interval_s=3600)
        writer.add(FUTURES, SYMBOL, _batch(0), ["seq"])
        writer.flush_due()
        reader = subprocess.Popen(
            [sys.executable, str(PROCS), "read-loop", lmdb_uri, FUTURES, PARTITION, str(BATCH_ROWS), str(stop_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "started"
        for number in range(1, BATCHES):
            writer.add(FUTURES, SYMBOL, _batch(number), ["seq"])
            assert [c.rows for c in writer.flush_due()] == [BATCH_ROWS]
        stop_file.touch()
        output, _ = reader.communicate()
    summary = json.loads(output.strip().splitlines()[-1])
    assert reader.returncode == 0
    assert summary["errors"] == []
    assert summary["torn"] == []
    assert summary["reads"] > 1
    assert summary["final_rows"] == BATCHES * BATCH_ROWS


@pytest.mark.parametrize("daily", [False, True], ids=["intraday", "every-run-daily"])
def test_reader_never_fails_while_maintenance_compacts_and_prunes_beside_the_writer(
    lmdb_uri: str, tmp_path: Path, daily: bool
) -> None:
    """Maintenance runs in its own thread as in the daemon; versions superseded > 0.3 s ago are deleted while the
    reader (no latest-version cache) keeps reading: the grace window keeps every read's segments alive. ``daily``:
    every run is a daily pass (its clock a day later each time), which also rebuilds the version map the reader
    loads on every read."""
    stop_file = tmp_path / "stop"
    done = threading.Event()
    totals = MaintenanceReport()
    runs = itertools.count()
    day_ns = 86_400 * 10**9 if daily else 0
    with Store.open(lmdb_uri, writer=True) as store:
        maintenance = Maintenance(
            store,
            MaintenancePolicy(compact_every=3, prune_grace_s=0.3, keep_daily_snapshots_days=2),
            clock=lambda: time.time_ns() + next(runs) * day_ns,
        )

        def maintain() -> None:
            while not done.is_set():
                report = maintenance.run_once()
                totals.compacted += report.compacted
                totals.pruned_versions += report.pruned_versions
                totals.snapshots_taken += report.snapshots_taken

        writer = StreamWriter(store, flush_rows=BATCH_ROWS, flush_interval_s=3600)
        writer.add(FUTURES, SYMBOL, _batch(0), ["seq"])
        writer.flush_due()
        reader = subprocess.Popen(
            [sys.executable, str(PROCS), "read-loop", lmdb_uri, FUTURES, PARTITION, str(BATCH_ROWS), str(stop_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "started"
        thread = threading.Thread(target=maintain)
        thread.start()
        number = 1
        while (
            number < BATCHES
            or totals.compacted < 3
            or totals.pruned_versions < 10
            or len(totals.snapshots_taken) < 3 * daily
        ):
            assert number < 20_000, f"maintenance did not keep up: {totals}"
            writer.add(FUTURES, SYMBOL, _batch(number), ["seq"])
            assert [c.rows for c in writer.flush_due()] == [BATCH_ROWS]
            number += 1
        stop_file.touch()
        output, _ = reader.communicate()
        # maintenance keeps running until the superseded versions are gone (fails after WAIT_S if it never prunes)
        wait_until(
            lambda: len(store.library(FUTURES).list_versions(PARTITION)) < number / 2,
            f"maintenance to prune most of the {number} versions",
        )
        done.set()
        thread.join()
    summary = json.loads(output.strip().splitlines()[-1])
    assert reader.returncode == 0
    assert summary["errors"] == []
    assert summary["torn"] == []
    assert summary["reads"] > 1
    assert summary["final_rows"] == number * BATCH_ROWS
