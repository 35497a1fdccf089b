"""Shared fixture: one in-process simulated venue per test module, on its own loop thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hydra_daemon.sim.testing import fast_config
from hydra_daemon.sim.venue import VenueThread


@pytest.fixture(scope="module")
def venue() -> Iterator[VenueThread]:
    with VenueThread(fast_config()) as running:
        yield running
