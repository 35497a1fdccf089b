"""`hydra-daemon backfill futures` against the simulated venue: the cost guard's dry run and refusal, and every user
mistake as one `error:` line on stderr, exit 1, no traceback. One case runs the real console script in a subprocess
(nothing else reaches stderr); the others call `cli.main` in this process (a subprocess costs seconds of imports)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import structlog

from hydra_daemon.cli import main
from hydra_daemon.config import load_config
from hydra_daemon.futures.backfill import plan_backfill, quote_backfill
from hydra_daemon.options.backfill import plan_options_backfill, quote_options_backfill
from hydra_daemon.sim.venue import VenueConfig, VenueThread
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.symbols import FUTURES
from tests.helpers import fast_config, wait_until

REPO = Path(__file__).resolve().parents[2]
DAYS = ("--start", "2026-11-02", "--end", "2026-11-03")


@pytest.fixture(scope="module")
def venue_config() -> VenueConfig:
    return fast_config(seed=8)


@pytest.fixture(scope="module", autouse=True)
def past_midnight(venue: VenueThread) -> None:
    """The whole of 2026-11-02 is on the tape once the clock passes midnight (the venue starts at 23:55)."""
    wait_until(lambda: venue.now_ns() > venue.call(lambda v: v.model.start_ns) + 600 * 10**9, "midnight")


def _config(venue: VenueThread, tmp_path: Path, max_cost: float = 100.0) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        "[databento]\n"
        f'historical_url = "{venue.info.historical_url}"\n'
        'futures_schemas = ["ohlcv-1d", "ohlcv-1m"]\n'
        f"max_historical_cost_usd = {max_cost}\n"
        '[[markets]]\nname = "HE"\nfutures_root = "HE"\noptions_root = "HE"\ncftc_code = "054642"\n'
    )
    return path


def _backfill(config: Path, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABENTO_API_KEY": key}
    command = [sys.executable, "-m", "hydra_daemon.cli", *_argv(config, *args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


def _argv(config: Path, *args: str, kind: str = "futures") -> list[str]:
    return ["backfill", kind, "--config", str(config), "--market", "HE", *args]


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, venue: VenueThread
) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """`hydra-daemon` run in this process with the venue's key; returns (returncode, stdout, stderr)."""
    monkeypatch.setenv("DATABENTO_API_KEY", venue.info.api_key)

    def run(config: Path, *args: str, kind: str = "futures") -> subprocess.CompletedProcess[str]:
        code = main(_argv(config, *args, kind=kind))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    yield run
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "hydra-daemon"]:
        root.removeHandler(handler)
    structlog.reset_defaults()


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_dry_run_prints_the_cost_of_every_request_and_downloads_nothing(
    venue: VenueThread, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    config = _config(venue, tmp_path)
    result = cli(config, *DAYS, "--dry-run")
    assert result.returncode == 0, result.stderr
    start, end = (pd.Timestamp(day, tz="UTC") for day in (DAYS[1], DAYS[3]))
    plan = plan_backfill(load_config(config), "HE", start, end)
    quotes = quote_backfill(plan, plan.source.client())
    total = sum(q.cost_usd for q in quotes)
    assert total > 0
    assert re.search(rf"total\s.*{len(quotes)}\s.*{sum(q.records for q in quotes)}\s.*{total:,.4f}", result.stdout)
    assert "a backfill would be allowed" in result.stdout
    assert not (tmp_path / "state" / "arctic").exists(), "a dry run opens no store"


def test_a_backfill_above_the_limit_is_refused_before_any_download(
    venue: VenueThread, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    line = _one_error_line(cli(_config(venue, tmp_path, max_cost=0.0001), *DAYS))
    assert re.fullmatch(r"error: .* would cost \$[0-9.]+, above the .* max_historical_cost_usd = \$0\.0001.*", line)
    with Store.open(f"lmdb://{tmp_path / 'state' / 'arctic'}", writer=False) as store:
        assert not store.has_library(FUTURES), "nothing was stored"


def test_end_not_after_start_is_one_line(
    venue: VenueThread, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    result = cli(_config(venue, tmp_path), "--start", "2026-11-02", "--end", "2026-11-02")
    assert _one_error_line(result) == (
        "error: --end 2026-11-02 must be after --start 2026-11-02 (--end is exclusive: the first day not included)"
    )


def test_end_past_the_available_data_is_one_line(
    venue: VenueThread, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    line = _one_error_line(cli(_config(venue, tmp_path), "--start", "2026-11-02", "--end", "2027-01-01"))
    assert line.startswith("error: Databento Historical rejected the request (HTTP 422): The requested `end`")
    assert "is after the available data end" in line


def test_a_wrong_key_is_one_line_and_not_echoed(venue: VenueThread, tmp_path: Path) -> None:
    wrong = "db-WrongKeyWrongKeyWrongKey12345"
    line = _one_error_line(_backfill(_config(venue, tmp_path), wrong, *DAYS))  # the real console script
    assert line.startswith("error: Databento Historical refused the API key (HTTP 401")
    assert "DATABENTO_API_KEY" in line
    assert wrong not in line


def test_an_unreachable_historical_api_is_one_line(
    venue: VenueThread, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    config = _config(venue, tmp_path)
    config.write_text(config.read_text().replace(venue.info.historical_url, "http://127.0.0.1:9"))
    line = _one_error_line(cli(config, *DAYS, "--dry-run"))
    assert line == (
        "error: cannot reach Databento Historical at http://127.0.0.1:9 (ConnectionError); check the network, or "
        "[databento] historical_url"
    )


def test_options_dry_run_prices_the_warm_up_and_the_range(
    venue: VenueThread, tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    config = _config(venue, tmp_path)
    result = cli(config, *DAYS, "--dry-run", kind="options")
    assert result.returncode == 0, result.stderr
    start, end = (pd.Timestamp(day, tz="UTC") for day in (DAYS[1], DAYS[3]))
    plan = plan_options_backfill(load_config(config), "HE", start, end)
    quotes = quote_options_backfill(plan, plan.source.client())
    total = sum(q.cost_usd for q in quotes)
    assert total > 0
    assert re.search(rf"total\s.*{len(quotes)}\s.*{sum(q.records for q in quotes)}\s.*{total:,.4f}", result.stdout)
    assert "mbp-1" in result.stdout and "a backfill would be allowed" in result.stdout
    assert not (tmp_path / "state" / "arctic").exists(), "a dry run opens no store"


def test_a_damaged_spend_file_does_not_reopen_todays_budget(
    venue: VenueThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NaN, the worst damage: every later check passed (found by a review helper; every kind of damage:
    tests/databento/test_spend_ledger.py)."""
    key = venue.info.api_key
    monkeypatch.setenv("DATABENTO_API_KEY", key)
    start, end = (pd.Timestamp(day, tz="UTC") for day in (DAYS[1], DAYS[3]))
    plan = plan_backfill(load_config(_config(venue, tmp_path, 1000.0)), "HE", start, end)
    total = sum(q.cost_usd for q in quote_backfill(plan, plan.source.client()))
    assert total > 0
    config = _config(venue, tmp_path, total * 1.5)  # one such backfill a day, not two

    first = _backfill(config, key, *DAYS)
    assert first.returncode == 0, first.stderr
    ledger = tmp_path / "state" / "historical_spend.json"
    assert json.loads(ledger.read_text())["spent_usd"] == pytest.approx(total)

    today = datetime.now(UTC).date().isoformat()
    ledger.write_text(f'{{"day": "{today}", "spent_usd": NaN}}')  # today's spend is no longer readable
    second = _backfill(config, key, *DAYS)
    assert "Traceback" not in second.stderr, second.stderr[-2000:]
    assert second.returncode == 1, f"a second backfill ran past the daily limit: {second.stderr[-600:]}"
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith("error: ") and "historical_spend.json" in line
