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
