"""`hydra-daemon check-config` as a real subprocess: effective config with secrets redacted, exit codes 0/1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hydra_daemon.cli", *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


def test_check_config_prints_effective_config() -> None:
    result = _cli("check-config", str(REPO / "config.toml"))
    assert result.returncode == 0, result.stderr
    assert 'cftc_code = "054642"' in result.stdout
    assert "flush_rows = 10000" in result.stdout


def test_check_config_redacts_s3_credentials(tmp_path: Path) -> None:
    config = tmp_path / "s3.toml"
    config.write_text(
        'state_dir = "/x"\n[storage]\narctic_uri = "s3://127.0.0.1:bucket?access=AKIAXXXX&secret=TOPSECRETVALUE&port=9"\n'
        '[[markets]]\nname="HE"\nfutures_root="HE"\noptions_root="HE"\ncftc_code="054642"\n'
    )
    result = _cli("check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert "TOPSECRETVALUE" not in result.stdout
    assert "AKIAXXXX" not in result.stdout
    assert "secret=***" in result.stdout


def test_check_config_errors_exit_1_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text('state_dir = "/x"\n[databento]\nheartbeat_interval_s = -5\n')
    result = _cli("check-config", str(config))
    assert result.returncode == 1
    assert str(config) in result.stderr
    assert "databento.heartbeat_interval_s" in result.stderr
    assert result.stdout == ""
    assert "markets" in result.stderr, "the missing [[markets]] is reported with the other error, not after a fix"


def _export_config(tmp_path: Path) -> Path:
    config = tmp_path / "export.toml"
    config.write_text(
        f'state_dir = "{tmp_path}"\n[storage]\narctic_uri = "lmdb://{tmp_path / "arctic"}?map_size=1GB"\n'
        f'lake_dir = "{tmp_path / "lake"}"\n'
        '[[markets]]\nname="HE"\nfutures_root="HE"\noptions_root="HE"\ncftc_code="054642"\n'
    )
    return config


def test_export_publishes_partitions_of_a_real_store(tmp_path: Path) -> None:
    import pandas as pd
    import polars as pl

    from hydra_daemon.store.arctic import Store

    index = pd.date_range("2024-05-01 23:00", periods=4, freq="30min", tz="UTC", name="ts_event")
    bars = pd.DataFrame({"close": [80.0, 80.5, 81.0, 81.5]}, index=index)
    config = _export_config(tmp_path)
    with Store.open(f"lmdb://{tmp_path / 'arctic'}?map_size=1GB", writer=True) as store:
        store.library("futures").write("HE.ohlcv-1m", bars)
    args = ("--library", "futures", "--symbol", "HE.ohlcv-1m", "--start", "2024-05-01", "--end", "2024-05-02")
    result = _cli("export", "--config", str(config), *args)
    assert result.returncode == 0, result.stderr
    dataset = tmp_path / "lake" / "futures" / "HE.ohlcv-1m"
    assert result.stdout.split() == [str(dataset / "date=2024-05-01"), str(dataset / "date=2024-05-02")]
    lake = pl.scan_parquet(dataset / "**/*.parquet", hive_partitioning=True).collect().sort("ts_event")
    assert lake["close"].to_list() == [80.0, 80.5, 81.0, 81.5]


def test_export_of_a_missing_symbol_or_backwards_range_is_one_line_exit_1(tmp_path: Path) -> None:
    from hydra_daemon.store.arctic import Store

    config = _export_config(tmp_path)
    with Store.open(f"lmdb://{tmp_path / 'arctic'}?map_size=1GB", writer=True) as store:
        store.library("cot")
    missing = _cli(
        "export",
        "--config",
        str(config),
        "--library",
        "cot",
        "--symbol",
        "LE.cot",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
    )
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    assert "error: export: no symbol 'LE.cot' in library 'cot'" in missing.stderr
    backwards = _cli(
        "export",
        "--config",
        str(config),
        "--library",
        "cot",
        "--symbol",
        "HE.cot",
        "--start",
        "2024-02-01",
        "--end",
        "2024-01-01",
    )
    assert backwards.returncode == 1
    assert "error: --end 2024-01-01 is before --start 2024-02-01" in backwards.stderr
