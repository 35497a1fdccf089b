"""`hydra-daemon demo` (the README's first command) as a real subprocess: it captures, shuts down cleanly and its
report shows every market-data symbol equal to the venue's ground truth."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AUDIT_ROW = re.compile(r"│ (\w+/HE\.[\w-]+)\s+│ (\d+)\s+│ (\d+)\s+│ (\d+)\s+│ (\d+)\s+│")


def test_demo_captures_exactly_once_and_exits_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
    env.pop("DATABENTO_API_KEY", None)
    result = subprocess.run(
        [sys.executable, "-m", "hydra_daemon.cli", "demo", "--seconds", "20", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {m.group(1): tuple(int(g) for g in m.groups()[1:]) for m in AUDIT_ROW.finditer(result.stdout)}
    expected = {f"futures/HE.{s}" for s in ("ohlcv-1d", "ohlcv-1m", "definition")}
    expected |= {f"options/HE.{s}" for s in ("mbp-1", "definition", "statistics")}
    assert set(rows) == expected, result.stdout
    for symbol, (stored, truth, missing, duplicated) in rows.items():
        assert stored > 0 and stored == truth, (symbol, stored, truth)
        assert (missing, duplicated) == (0, 0), symbol
    assert "polars.scan_parquet reads" in result.stdout
    assert "Option chain HE" in result.stdout
    assert not (tmp_path / "health.sock").exists(), "the daemon removes its health socket on shutdown"
