"""A full LMDB map is a fault, not a crash loop: the store reports it with the fix, stops writing (LMDB cannot go on
after a failed commit), committed data stays intact, and capture resumes exactly where it stopped once the store is
reopened with a larger map. A disk with less room than a commit needs cuts LMDB's write short, which it reports as
EIO, not ENOSPC: that too stops writes (reproduced here with a file-size limit, RLIMIT_FSIZE, as no tmpfs can be
mounted without root)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from arcticdb.adapters.lmdb_library_adapter import convert_size_str_to_bytes

from hydra_daemon.store import health
from hydra_daemon.store.arctic import StorageFullError, Store
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.health import StorageStatus, is_out_of_space, map_size_bytes
from hydra_daemon.store.maintenance import Maintenance, MaintenancePolicy
from hydra_daemon.store.partitions import read_stream
from hydra_daemon.store.symbols import OPTIONS, partition_symbol
from hydra_daemon.store.writer import FlushError, StreamWriter

SYMBOL = "HE.mbp-1"
ROWS = 20_000
BASE = pd.Timestamp("2024-03-01 14:30", tz="UTC")


def _quotes(batch: int) -> pd.DataFrame:
    rng = np.random.default_rng(batch)  # incompressible values: the map fills after a few batches
    index = pd.date_range(BASE + pd.Timedelta(minutes=batch), periods=ROWS, freq="ms", name="ts_recv")
    sequence = np.arange(batch * ROWS, (batch + 1) * ROWS, dtype="int64")
    return pd.DataFrame({"sequence": sequence, "bid": rng.random(ROWS), "ask": rng.random(ROWS)}, index=index)


def _feature() -> pd.DataFrame:
    return pd.DataFrame({"as_of": [BASE], "available_at": [BASE], "value": [1.0]})


def test_map_size_is_read_from_the_uri_in_arcticdbs_units() -> None:
    """ArcticDB's units are decimal: a binary reading overstated a 3TB map by 10 % (health degraded at 88 %)."""
    for size in ("2GB", "512MB", "3TB", "64KB"):
        assert map_size_bytes(f"lmdb:///x?map_size={size}") == convert_size_str_to_bytes(size)
    assert map_size_bytes("lmdb:///x?map_size=3TB") == 3 * 10**12
    assert map_size_bytes("lmdb:///x") == 400 * 1024**3  # ArcticDB's default
    # ArcticDB maps the last of repeated values, splits on ";" too: health judged another map (found by a review helper)
    assert map_size_bytes("lmdb:///x?map_size=200GB&map_size=1GB") == 10**9
    assert map_size_bytes("lmdb:///x?map_size=1GB;map_size=2GB") == 2 * 10**9
    assert is_out_of_space(OSError(28, "No space left on device"))
    assert not is_out_of_space(ValueError("bad frame"))


def test_a_map_filled_by_a_commit_is_a_full_map_with_its_fix(tmp_path: Path) -> None:
    """A put meeting the limit raises `LmdbMapFullError`; a commit meeting it (LMDB saving its free list) surfaces as
    ArcticDB's generic error naming MDB_MAP_FULL, which was taken for a failed disk ("check the disk") instead of a
    full map ("grow map_size")."""
    commit = RuntimeError("lmdb::map_full_error(mdb_txn_commit: MDB_MAP_FULL: Environment mapsize limit reached)")
    status = StorageStatus(tmp_path, 10**6, "lmdb:///x?map_size=1MB")
    assert status.write_failed(commit, "append HE.mbp-1")
    problem = status.usage(lease_held=True).problem or ""
    assert problem.startswith("LMDB map full writing append HE.mbp-1") and "grow map_size" in problem, problem


def test_a_full_map_stops_writes_keeps_committed_data_and_resumes_with_a_larger_map(tmp_path: Path) -> None:
    path = tmp_path / "arctic"
    committed = 0
    with Store.open(f"lmdb://{path}?map_size=4MB", writer=True) as store:
        writer = StreamWriter(store, flush_rows=ROWS)
        batch = 0
        with pytest.raises(FlushError) as failure:
            while batch < 100:
                writer.add(OPTIONS, SYMBOL, _quotes(batch), ["sequence"])
                committed += sum(c.rows for c in writer.flush_due())
                batch += 1
        assert committed > 0, "the map filled before the first flush: make the map larger"
        assert is_out_of_space(failure.value.failures[(OPTIONS, SYMBOL)])
        usage = store.usage()
        assert usage.problem is not None and "map_size" in usage.problem and "restart" in usage.problem
        assert usage.map_size_bytes == 4 * 10**6 and usage.map_fraction is not None and usage.map_fraction > 0.8
        with pytest.raises(StorageFullError, match="restart"):  # this process writes no more: nothing half-written
            writer.flush_all()
        with pytest.raises(StorageFullError):
            FeatureStore(store).write_feature("HE", "atm_iv", _feature())
        with pytest.raises(StorageFullError):
            Maintenance(store, MaintenancePolicy())
        assert writer.pending_rows() == ROWS
        # one day's partition, read directly: list_symbols may write (it compacts ArcticDB's symbol list), so a
        # store whose writes stopped refuses it
        stored = restore_utc(store.library(OPTIONS).read(partition_symbol(SYMBOL, BASE.date())).data)
        assert stored["sequence"].tolist() == list(range(committed))
    gc.collect()  # one Arctic per LMDB path per process: let the next open map the store afresh
    with Store.open(f"lmdb://{path}?map_size=64MB", writer=True) as store:
        writer = StreamWriter(store, flush_rows=ROWS)
        resumed = writer.add(OPTIONS, SYMBOL, pd.concat([_quotes(b) for b in range(batch + 1)]), ["sequence"])
        assert resumed == (batch + 1) * ROWS - committed  # upstream replays; the watermark drops what was stored
        writer.flush_all()
        assert store.usage().problem is None
        stored = restore_utc(read_stream(store.library(OPTIONS), SYMBOL).data)
        assert stored["sequence"].tolist() == list(range((batch + 1) * ROWS))


SHORT_WRITE = textwrap.dedent(
    """
    import json, os, resource, sys
    from pathlib import Path
    from hydra_daemon.store.arctic import StorageFaultError, Store
    from hydra_daemon.store.writer import FlushError, StreamWriter
    from hydra_daemon.store.symbols import OPTIONS
    from tests.store.test_space import SYMBOL, ROWS, _quotes

    path = Path(sys.argv[1])
    result = {}
    with Store.open(f"lmdb://{path}?map_size=1GB", writer=True) as store:
        writer = StreamWriter(store, flush_rows=ROWS)
        writer.add(OPTIONS, SYMBOL, _quotes(0), ["sequence"])
        result["committed"] = sum(c.rows for c in writer.flush_due())
        size = (path / OPTIONS / "data.mdb").stat().st_size  # the file may grow 8 KB more: the commit is cut short
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 8192, resource.RLIM_INFINITY))
        writer.add(OPTIONS, SYMBOL, _quotes(1), ["sequence"])
        try:
            writer.flush_due()
        except FlushError as error:
            result["flush"] = str(error)
        for attempt in range(2):  # what a restarted pipeline does: must be refused, not crash the process
            try:
                writer.flush_all()
            except StorageFaultError as error:
                result["again"] = str(error)
        usage = store.usage()
        result["problem"], result["retrying"] = usage.problem, usage.retrying
    print(json.dumps(result), flush=True)
    """
)


def test_a_commit_cut_short_by_the_disk_stops_writes_instead_of_crashing(tmp_path: Path) -> None:
    """LMDB says "Input/output error" for a short write (found by a review helper: it was taken for a passing S3
    error and retried, and the next write crashed the process: segfault, or "double free" at exit)."""
    path = tmp_path / "arctic"
    root = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-c", SHORT_WRITE, str(path)], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["committed"] == ROWS and "Input/output error" in result["flush"]
    assert "store writes stopped" in result["again"] and result["retrying"] is None
    assert (
        result["problem"].startswith("LMDB write failed writing append HE.mbp-1")
        and "check the disk" in result["problem"]
    )
    with Store.open(f"lmdb://{path}", writer=True) as store:  # the next process: committed rows intact
        stored = read_stream(store.library(OPTIONS), SYMBOL).data
    assert len(stored) == ROWS


def test_a_failed_lmdb_write_with_little_room_left_is_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = health.StorageStatus(tmp_path, 10**9, f"lmdb://{tmp_path}")
    error = RuntimeError("lmdb::runtime_error(mdb_txn_commit: Input/output error)")
    monkeypatch.setattr(health, "LOW_DISK_BYTES", 2**62)  # every real disk has less free than that
    assert status.write_failed(error, "append HE.mbp-1")
    usage = status.usage(lease_held=True)
    assert usage.problem is not None and usage.problem.startswith("disk full writing append HE.mbp-1 (")
    assert "free disk space under the store" in usage.problem
    with pytest.raises(StorageFullError):
        status.require_space()
    assert not health.StorageStatus(None, None, "s3://h:b").write_failed(error, "x"), "S3: a failure to retry"
