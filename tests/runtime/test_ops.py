"""The shipped monitoring files: Prometheus alert rules pass `promtool check rules` and their unit tests; the Grafana
dashboard is valid JSON whose every query names a metric the daemon exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from hydra_daemon.runtime import metrics
from tests.helpers import system_tool

OPS = Path(__file__).resolve().parents[2] / "ops"
ALERTS = OPS / "prometheus" / "alerts.yml"


def promtool(*args: str) -> str:
    binary = system_tool("promtool", "prometheus")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=OPS / "prometheus")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_alert_rules_are_valid_and_fire_as_their_unit_tests_say() -> None:
    assert "SUCCESS: 7 rules found" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")
    names = set(re.findall(r"^\s+- alert: (\w+)$", ALERTS.read_text(), re.MULTILINE))
    wanted = {"HydraCaptureStalled", "HydraReconnectStorm", "HydraCaptureLagging", "HydraStoreMapAlmostFull"}
    assert wanted | {"HydraCotReleaseMissed"} <= names


def exported_names() -> set[str]:
    """Every metric name the daemon's collector can emit (from the module's source: families are built there)."""
    source = Path(metrics.__file__).read_text()
    names = set(re.findall(r'"(hydra_[a-z_]+)"', source))
    names |= {f"hydra_{name}" for name, _, _ in metrics._COUNTERS}
    counters = {n for n in names if re.search(rf'CounterMetricFamily\(\s*"{n}"', source)}
    counters |= {f"hydra_{name}" for name, _, _ in metrics._COUNTERS}
    histograms = {n for n in names if re.search(rf'HistogramMetricFamily\(\s*"{n}"', source)}
    return (
        names
        | {f"{n}_total" for n in counters}
        | {f"{n}_{suffix}" for n in histograms for suffix in ("bucket", "sum", "count")}
    )


def test_dashboard_and_alerts_only_use_exported_metrics() -> None:
    dashboard = json.loads((OPS / "grafana" / "hydra-daemon.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += re.findall(r"^\s+expr: (.+)$", ALERTS.read_text(), re.MULTILINE)
    used = {name for expr in exprs for name in re.findall(r"\bhydra_[a-z_]+", expr)}
    assert used, "queries name hydra metrics"
    assert used <= exported_names(), used - exported_names()
    assert dashboard["uid"] == "hydra-daemon" and len(dashboard["panels"]) >= 10
