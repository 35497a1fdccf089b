"""`backfill futures` (the real console script) against the simulated venue when `<state_dir>/historical_spend.json`
is damaged after today's budget was spent: fail closed, one line (found by a review helper)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from hydra_daemon.config import load_config
from hydra_daemon.futures.backfill import plan_backfill, quote_backfill
from hydra_daemon.sim.venue import VenueConfig, VenueThread
from tests.helpers import fast_config, wait_until

REPO = Path(__file__).resolve().parents[2]
DAYS = ("--start", "2026-11-02", "--end", "2026-11-03")


@pytest.fixture(scope="module")
def venue_config() -> VenueConfig:
    return fast_config(seed=8)


@pytest.fixture(scope="module", autouse=True)
def past_midnight(venue: VenueThread) -> None:
    wait_until(lambda: venue.now_ns() > venue.call(lambda v: v.model.start_ns) + 600 * 10**9, "midnight")


def _config(venue: VenueThread, path: Path, state: Path, max_cost: float) -> Path:
    path.write_text(
        f'state_dir = "{state}"\n'
        "[databento]\n"
        f'historical_url = "{venue.info.historical_url}"\n'
        'futures_schemas = ["ohlcv-1d", "ohlcv-1m"]\n'
        f"max_historical_cost_usd = {max_cost!r}\n"
        '[[markets]]\nname = "HE"\nfutures_root = "HE"\noptions_root = "HE"\ncftc_code = "054642"\n'
    )
    return path


def _backfill(venue: VenueThread, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABENTO_API_KEY": venue.info.api_key}
    argv = [sys.executable, "-m", "hydra_daemon.cli", "backfill", "futures", "--config", str(config), "--market", "HE"]
    return subprocess.run([*argv, *DAYS], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


TODAY = datetime.now(UTC).date().isoformat()


def test_a_damaged_spend_file_does_not_reopen_todays_budget(
    venue: VenueThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NaN, the worst damage: every later check passed (every kind: tests/databento/test_spend_ledger.py)."""
    damage = b'{"day": "' + TODAY.encode() + b'", "spent_usd": NaN}'
    monkeypatch.setenv("DATABENTO_API_KEY", venue.info.api_key)
    state = tmp_path / "state"
    probe = _config(venue, tmp_path / "probe.toml", state, 1000.0)
    start, end = (pd.Timestamp(day, tz="UTC") for day in (DAYS[1], DAYS[3]))
    plan = plan_backfill(load_config(probe), "HE", start, end)
    total = sum(q.cost_usd for q in quote_backfill(plan, plan.source.client()))
    assert total > 0
    config = _config(venue, tmp_path / "config.toml", state, total * 1.5)  # one such backfill a day, not two

    first = _backfill(venue, config)
    assert first.returncode == 0, first.stderr
    ledger = state / "historical_spend.json"
    assert json.loads(ledger.read_text())["spent_usd"] == pytest.approx(total)

    ledger.write_bytes(damage)  # today's spend is no longer readable
    second = _backfill(venue, config)
    assert "Traceback" not in second.stderr, second.stderr[-2000:]
    assert second.returncode == 1, (
        f"a second ${total:.6f} backfill ran against a ${total * 1.5:.6f} daily limit already ${total:.6f} spent, "
        f"because the damaged spend file counted as $0; stderr: {second.stderr[-600:]}"
    )
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith("error: ") and "historical_spend.json" in line
