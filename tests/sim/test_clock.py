"""The simulation clock: real time or accelerated from a chosen UTC start (wall time is injected, not waited for)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from hydra_daemon.sim import clock as clock_module
from hydra_daemon.sim.clock import SimClock

START = datetime(2026, 11, 2, 23, 55, tzinfo=UTC)


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The monotonic wall clock SimClock.now() reads (pass it as `_wall_start` too); move it by assigning wall[0]."""
    now = [1000.0]
    monkeypatch.setattr(clock_module.time, "monotonic", lambda: now[0])
    return now


@pytest.mark.parametrize("speed", [1.0, 600.0, 1440.0])
def test_sim_time_runs_speed_times_faster_than_wall_time(wall: list[float], speed: float) -> None:
    clock = SimClock(start=START, speed=speed, _wall_start=wall[0])
    assert clock.now() == START
    wall[0] += 60.0
    assert clock.now() == START + timedelta(seconds=60 * speed)
    assert clock.now().tzinfo == UTC
    assert clock.now_ns() == int((START + timedelta(seconds=60 * speed)).timestamp()) * 1_000_000_000


def test_wall_seconds_until_an_instant(wall: list[float]) -> None:
    clock = SimClock(start=START, speed=1440.0, _wall_start=wall[0])  # a sim day per wall minute
    assert clock.wall_seconds_until(START + timedelta(days=2)) == pytest.approx(120.0)
    wall[0] += 200.0
    assert clock.wall_seconds_until(START + timedelta(days=2)) == 0.0


@pytest.mark.parametrize(
    ("start", "speed", "message"),
    [
        (datetime(2026, 11, 2), 1.0, "UTC-aware"),
        (datetime(2026, 11, 2, tzinfo=timezone(timedelta(hours=-5))), 1.0, "UTC-aware"),
        (START, 0.0, "speed must be > 0"),
    ],
)
def test_bad_clock_settings_are_rejected(start: datetime, speed: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimClock(start=start, speed=speed)
