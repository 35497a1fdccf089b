"""The shipped unit file: notify type, watchdog, credentials, directories, hardening; `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).parents[2] / "systemd" / "hydra-daemon.service"


def _sections() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            current.setdefault(key, []).append(value)
    return sections


def _service() -> dict[str, list[str]]:
    sections = _sections()
    assert set(sections) == {"Unit", "Service", "Install"}
    return sections["Service"]


def test_unit_declares_the_daemon_contract() -> None:
    service = _service()
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "Restart": ["on-failure"],
        "User": ["hydra"],
        "Group": ["hydra"],
        "StateDirectory": ["hydra-daemon"],
        "RuntimeDirectory": ["hydra-daemon"],
        "LogsDirectory": ["hydra-daemon"],
        "LoadCredential": ["databento_api_key:/etc/credstore/databento"],
        "ExecStart": ["/usr/local/bin/hydra-daemon run --config /etc/hydra-daemon/config.toml"],
        "ProtectSystem": ["strict"],
        "NoNewPrivileges": ["yes"],
        "CapabilityBoundingSet": [""],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
        "UMask": ["0027"],
        "StandardError": ["journal"],
        "SyslogLevelPrefix": ["yes"],
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    assert int(service["WatchdogSec"][0]) > 0
    assert int(service["TimeoutStopSec"][0]) >= 60, "long enough to flush"
    assert int(service["TimeoutStartSec"][0]) > 120, "longer than the daemon's own 120 s ready timeout"
    assert "@system-service" in service["SystemCallFilter"]


def test_unit_matches_the_config_defaults() -> None:
    from hydra_daemon.config import parse_config

    config = parse_config(
        {"markets": [{"name": "HE", "futures_root": "HE", "options_root": "HE", "cftc_code": "054642"}]}
    )
    service = _service()
    assert config.state_dir == Path("/var/lib") / service["StateDirectory"][0]
    assert config.health_socket.parent == Path("/run") / service["RuntimeDirectory"][0]
    assert config.databento.credential_name == service["LoadCredential"][0].split(":")[0]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """Runs `systemd-analyze verify` where systemd is installed (it is on the development machine)."""
    analyze = shutil.which("systemd-analyze")
    text = UNIT.read_text()
    assert "/usr/local/bin/hydra-daemon" in text
    if analyze is None:
        return
    unit = tmp_path / "hydra-daemon.service"
    unit.write_text(text.replace("/usr/local/bin/hydra-daemon", sys.executable))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "hydra-daemon.service" not in result.stderr, result.stderr
