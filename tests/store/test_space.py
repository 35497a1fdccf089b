"""A full LMDB map is a fault, not a crash loop: the store reports it with the fix, stops writing (LMDB cannot go on
after a failed commit), committed data stays intact, and capture resumes exactly where it stopped once the store is
reopened with a larger map. (A full disk takes the same path; checked by hand on an 8 MB tmpfs, which needs root.)"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from arcticdb.adapters.lmdb_library_adapter import convert_size_str_to_bytes

from hydra_daemon.store.arctic import StorageFullError, Store
from hydra_daemon.store.features import FeatureStore
from hydra_daemon.store.frames import restore_utc
from hydra_daemon.store.health import is_out_of_space, map_size_bytes
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
    assert is_out_of_space(OSError(28, "No space left on device"))
    assert not is_out_of_space(ValueError("bad frame"))


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
