"""`backfill futures|options` with a day a nanosecond timestamp cannot hold (before 1970 or after 2262-04-11) is one
`error:` line and exit 1, not an uncaught exception (found by a review helper)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["futures", "options"])
@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize(("start", "end"), [("0001-01-01", "2024-01-02"), ("2262-04-10", "2262-04-13")])
def test_a_day_outside_the_nanosecond_range_is_one_line(
    tmp_path: Path, kind: str, dry_run: bool, start: str, end: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[databento]\nhistorical_url = "http://127.0.0.1:9"\n'
        '[[markets]]\nname = "HE"\nfutures_root = "HE"\noptions_root = "HE"\ncftc_code = "054642"\n'
    )
    argv = ["backfill", kind, "--config", str(config), "--market", "HE", "--start", start, "--end", end]
    env = {**os.environ, "DATABENTO_API_KEY": "db-SomeKeySomeKeySomeKeySomeKey1"}
    result = subprocess.run(
        [sys.executable, "-m", "hydra_daemon.cli", *argv, *(["--dry-run"] if dry_run else [])],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr[-1500:]
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and ("--start" in line or "--end" in line)
