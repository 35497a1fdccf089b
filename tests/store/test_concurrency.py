"""A reader process reading in a loop while the writer appends: no errors, no torn reads (whole commits only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from hydra_daemon.store.arctic import Store
from hydra_daemon.store.symbols import FUTURES
from hydra_daemon.store.writer import StreamWriter

PROCS = Path(__file__).with_name("store_procs.py")
SYMBOL = "HE.mbp-1"
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
        writer = StreamWriter(store, flush_rows=BATCH_ROWS, flush_interval_s=3600, compact_every=25)
        writer.add(FUTURES, SYMBOL, _batch(0), ["seq"])
        writer.flush_due()
        reader = subprocess.Popen(
            [sys.executable, str(PROCS), "read-loop", lmdb_uri, FUTURES, SYMBOL, str(BATCH_ROWS), str(stop_file)],
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
