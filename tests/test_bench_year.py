"""`benchmarks/bench_year.py --days N` (the short mode) runs the real storage code and states every target."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.helpers import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_year.py"
TARGETS = (
    "disk/zstd-DBN",
    "quotes flush p99",
    "chain flush p99",
    "feature write p99",
    "cot cycle p99",
    "cot panel p99",
    "lake export per M rows p99",
)
READS = ("options_chain", "feature(1d)", "cot ", "quotes(10m)", "cot_panel 50x20y", "RSS", "of which heap")


def test_short_mode_prints_each_period_and_a_verdict_for_every_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shm = Path("/dev/shm")
    # tmpfs: no fsync per LMDB commit, so the short mode stays short
    where = Path(tempfile.mkdtemp(prefix="hydra-bench-test-", dir=shm)) if shm.is_dir() else tmp_path
    args = ["--days", "5", "--session-hours", "0.03", "--period-days", "2", "--quotes-per-s", "20"]
    args += ["--panel-markets", "3", "--panel-years", "1", "--dir", str(where)]
    bench = load_script(BENCH)
    assert bench.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    periods = [line for line in lines if line.startswith("day=")]
    assert [p.split()[0] for p in periods] == ["day=2", "day=4", "day=5"]
    for period in periods:
        fields = dict(item.split("=", 1) for item in period.split() if "=" in item and not item.startswith("read"))
        assert float(fields["disk_mb"]) > 0 and float(fields["bytes_per_record"]) > 0 and float(fields["lake_mb"]) > 0
        assert float(fields["versions_max"]) >= 1 and 0 < float(fields["rss_mb"]) <= float(fields["rss_peak_mb"])
    verdict = lines[-1]
    assert verdict.startswith("targets (period 1 vs day 5):")
    for target in (*TARGETS, *READS):
        assert target in verdict, f"{target!r} missing from {verdict!r}"
    assert verdict.count(" met;") == verdict.count(";")  # every target ends in "met;" or "not met;"
    assert not list(where.iterdir()), "the benchmark left its store behind"
    where.rmdir()
