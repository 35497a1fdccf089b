"""`benchmarks/bench_partition.py` short mode: append latency at N segments, one symbol vs day partitions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hydra_daemon.store import arctic
from tests.helpers import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_partition.py"
ROW = re.compile(r"^\s*(\d+) \|\s+([\d.]+) /\s+([\d.]+) \|\s+([\d.]+) /\s+([\d.]+) \| ([\d.]+)x, ([\d.]+)x$", re.M)


def test_short_mode_prints_both_layouts_side_by_side_for_each_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_script(BENCH)
    production = arctic.LIBRARY_OPTIONS
    assert bench.main(["--sizes", "50", "200", "--appends", "10", "--dir", str(tmp_path)]) == 0
    assert arctic.LIBRARY_OPTIONS is production, "the benchmark's library options must not outlive it"
    rows = ROW.findall(capsys.readouterr().out)
    assert [int(row[0]) for row in rows] == [50, 200]
    assert all(float(value) > 0 for row in rows for value in row[1:])
    assert list(tmp_path.iterdir()) == []  # its stores are removed
