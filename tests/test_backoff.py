"""Backoff: grows with jitter up to its cap, resets."""

from __future__ import annotations

from hydra_daemon.backoff import Backoff


def test_backoff_grows_with_jitter_up_to_cap_and_resets() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, floor_s=0.01)
    ceilings = [1, 2, 4, 8, 8, 8]
    for ceiling in ceilings:
        delay = backoff.next_delay()
        assert 0.01 <= delay <= ceiling
    assert backoff.attempt == len(ceilings)
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 1.0
