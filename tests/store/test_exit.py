"""A process that read the store exits cleanly although one of ArcticDB's pool threads still has to take the GIL
(`hydra_daemon.store.quiesce`); without the exit hook it died with SIGSEGV in interpreter finalisation."""

from __future__ import annotations

import subprocess
import sys

from hydra_daemon.store.arctic import Store
from hydra_daemon.store.symbols import FUTURES
from hydra_daemon.store.writer import StreamWriter
from tests.store.test_concurrency import PARTITION, PROCS, SYMBOL, _batch


def test_a_reader_exits_cleanly_while_a_pool_thread_waits_for_the_gil(lmdb_uri: str) -> None:
    with Store.open(lmdb_uri, writer=True) as store:
        writer = StreamWriter(store, flush_rows=1, flush_interval_s=3600)
        writer.add(FUTURES, SYMBOL, _batch(0), ["seq"])
        writer.flush_due()
    reader = subprocess.run(
        [sys.executable, str(PROCS), "exit-after-read", lmdb_uri, FUTURES, PARTITION],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert reader.stdout.splitlines() == ["started"], reader.stderr
    assert reader.returncode == 0, f"exit status {reader.returncode}: {reader.stderr[-2000:]}"
