"""The short mode of `benchmarks/fuzz.py`: a few dozen hostile inputs per boundary, none uncaught, no bad row."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz.py"


def test_short_fuzz_run_has_no_uncaught_exception_and_no_bad_row(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("hydra_fuzz", FUZZ)
    assert spec is not None and spec.loader is not None
    fuzz = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "hydra_fuzz", fuzz)  # dataclasses look their module up there
    spec.loader.exec_module(fuzz)

    results = fuzz.run_all(30, seed=11)

    print(fuzz.report(results))
    assert set(results) == set(fuzz.BOUNDARIES)
    for name, counts in results.items():
        assert counts.inputs == 30, name
        assert counts.uncaught == 0, f"{name}: {counts.examples}"
        assert counts.bad_rows == 0, name
        assert counts.documented > 0, f"{name}: the hostile inputs were all accepted: is the boundary checked?"
