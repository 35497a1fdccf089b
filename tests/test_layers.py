"""Imports point one way: every module of hydra_daemon imports only from lower layers (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hydra_daemon"

# Lowest first; a top-level module or package may import only from layers below its own.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "clock", "latency", "backoff", "cme_sessions", "cme_contracts"}),
    frozenset({"store", "sim"}),
    frozenset({"config", "redaction", "reader"}),
    frozenset({"config_view", "secrets", "logging_setup", "ingest"}),
    frozenset({"databento"}),
    frozenset({"capture", "lake"}),
    frozenset({"cot", "futures", "options"}),
    frozenset({"runtime"}),
    frozenset({"demo_report"}),
    frozenset({"demo"}),
    frozenset({"cli"}),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _unit(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_units(path: Path) -> set[str]:
    units = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        units |= {name.split(".")[1] for name in names if name.startswith("hydra_daemon.")}
    return units


def test_every_module_belongs_to_a_layer() -> None:
    units = {_unit(path) for path in PACKAGE.rglob("*.py")} - {"__init__", "__main__"}
    assert units <= set(RANK), f"add {sorted(units - set(RANK))} to LAYERS"


def test_imports_point_down() -> None:
    upward = [
        f"{path.relative_to(PACKAGE.parent)} imports hydra_daemon.{target}"
        for path in PACKAGE.rglob("*.py")
        if _unit(path) in RANK
        for target in _imported_units(path)
        if target != _unit(path) and RANK[target] >= RANK[_unit(path)]
    ]
    assert upward == []


def test_production_code_never_imports_the_simulator() -> None:
    allowed = {"sim", "demo", "demo_report", "cli"}  # the simulator itself, the demo and its `sim`/`demo` commands
    offenders = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if _unit(path) not in allowed and "sim" in _imported_units(path)
    ]
    assert offenders == []
