"""`benchmarks/bench_daemon_disk.py` in its short mode: the real daemon and venue subprocesses, samples that add up,
the zstd DBN counterpart computed from exactly the stored rows, and a verdict."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import ModuleType

import databento_dbn as dbn
import numpy as np
import pytest
import zstandard

from hydra_daemon.config import load_config
from hydra_daemon.databento.decode import layout, structured, to_frame
from tests.helpers import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_daemon_disk.py"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    module = load_script(BENCH)
    return module


@pytest.mark.parametrize("schema", ["mbp-1", "ohlcv-1d", "definition", "statistics", "trades"])
def test_stored_rows_go_back_to_the_same_dbn_records(bench: ModuleType, schema: str) -> None:
    """The ratio's denominator is the DBN of exactly what was stored: `to_dbn` inverts the daemon's decoding."""
    raw = zstandard.ZstdDecompressor().stream_reader((DATA / f"test_data.{schema}.dbn.zst").open("rb")).read()
    decoder = dbn.DBNDecoder()
    decoder.write(raw)
    record_type = layout(schema).record_type
    records = structured([r for r in decoder.decode() if isinstance(r, record_type)], record_type)
    frame = to_frame(records, schema, np.full(len(records), "X", dtype=object))
    back = bench.to_dbn(frame, schema)
    assert len(records) > 0 and back.dtype == records.dtype
    for name in records.dtype.names or ():
        if not name.startswith("_reserved"):
            assert np.array_equal(back[name], records[name]), name


def test_the_daemon_runs_the_shipped_storage_cadence(bench: ModuleType, tmp_path: Path) -> None:
    venue = {
        "live_host": "127.0.0.1",
        "live_port": "1",
        "historical_url": "http://127.0.0.1:2",
        "cftc_url": "http://127.0.0.1:2",
    }
    config = load_config(bench.daemon_config(tmp_path, venue))
    shipped = load_config(bench.CONFIG_TOML)
    assert config.storage.arctic_uri.startswith(f"lmdb://{tmp_path / 'arctic'}?")
    for field in ("flush_interval_s", "compact_every", "maintenance_interval_s", "prune_grace_s"):
        assert getattr(config.storage, field) == getattr(shipped.storage, field), field
    assert [m.name for m in config.markets] == ["HE", "CL"]


def test_short_mode_samples_the_running_daemon_and_states_the_target(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    shm = Path("/dev/shm")
    where = Path(tempfile.mkdtemp(prefix="hydra-disk-test-", dir=shm if shm.is_dir() else None))
    assert bench.main(["--minutes", "0.1", "--sample-s", "2", "--rate", "100", "--dir", str(where)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    samples = [dict(item.split("=", 1) for item in line.split()) for line in lines if line.startswith("t=")]
    assert len(samples) == 3
    rows = [int(s["rows"]) for s in samples]
    assert rows == sorted(rows) and rows[0] > 0, "stored rows only grow"
    for sample in samples:
        disk = float(sample["disk_mb"])
        libraries = sum(float(v) for k, v in sample.items() if k.endswith("_mb") and k != "disk_mb")
        assert libraries == pytest.approx(disk, abs=0.02), "the total is the libraries' du"
        assert float(sample["bytes_per_row"]) == pytest.approx(disk * 1e6 / int(sample["rows"]), rel=0.01)
        assert 0 < float(sample["zstd_dbn_bytes_per_row"]) < 80, "a zstd mbp-1 record is well under its 80 bytes"
    assert any(line.startswith("keys options: ") and " table_data=" in line for line in lines)
    assert lines[-1].startswith("targets (0.1 min): disk/zstd-DBN ")
    assert lines[-1].count(";") == 2 and lines[-1].count(" met;") == 2, "each target: met or not met"
    assert not list(where.iterdir()), "the benchmark left its store behind"
    where.rmdir()
