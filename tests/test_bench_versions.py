"""`benchmarks/bench_versions.py` short mode: a once-a-minute symbol's version map, folded vs rebuilt daily."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hydra_daemon.store import maintenance
from tests.helpers import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_versions.py"
_FOUR = r"\s+([\d.]+)" * 4
ROW = re.compile(rf"^\s*(\d+) \|\s+(\d+) \|{_FOUR} \|{_FOUR}$", re.M)


def test_short_mode_prints_both_variants_and_the_rebuilt_map_does_not_grow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_script(BENCH)
    shipped = maintenance._rebuild_version_map
    assert bench.main(["--days", "3", "--per-day", "60", "--period-days", "1", "--dir", str(tmp_path)]) == 0
    assert maintenance._rebuild_version_map is shipped, "the benchmark's fold must not outlive it"
    out = capsys.readouterr().out
    rows = [[float(value) for value in row] for row in ROW.findall(out)]
    assert [row[0] for row in rows] == [1, 2, 3]
    assert rows[-1][1] >= 180  # versions written
    folded_kb, rebuilt_kb = [row[2] for row in rows], [row[6] for row in rows]
    assert folded_kb[-1] > folded_kb[0] * 1.5  # a fold keeps every version ever written ...
    assert rebuilt_kb[-1] < rebuilt_kb[0] * 1.2  # ... a rebuild only those kept (sizes, not timings)
    assert "last/first: folded map" in out
    assert list(tmp_path.iterdir()) == []  # its stores are removed
