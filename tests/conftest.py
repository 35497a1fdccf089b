"""Fixtures shared by the whole suite: the simulated venue and an ArcticDB store (LMDB in tmp_path).

A module changes what it gets by overriding the input fixture, not the fixture itself: `venue_config` (which venue
its module-scoped `venue` runs) and `store_uri` (where `store` opens, e.g. parametrised over LMDB and S3).
Plain helpers (waits, the Live client, record collectors) live in `tests/helpers.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hydra_daemon.sim.venue import VenueConfig, VenueThread
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.uri import default_lmdb_uri
from tests.helpers import fast_config


@pytest.fixture(scope="module")
def venue_config() -> VenueConfig:
    """The configuration of the module's venue; override it in a module for another seed, products or recording."""
    return fast_config()


@pytest.fixture(scope="module")
def venue(venue_config: VenueConfig) -> Iterator[VenueThread]:
    """One simulated venue (its own thread, loopback ports) shared by the tests of a module."""
    with VenueThread(venue_config) as running:
        yield running


@pytest.fixture
def lmdb_uri(tmp_path: Path) -> str:
    """The production default store location, inside this test's tmp_path."""
    return default_lmdb_uri(tmp_path)


@pytest.fixture
def store_uri(lmdb_uri: str) -> str:
    """Where `store` opens; override it in a module to run its store tests elsewhere (e.g. S3)."""
    return lmdb_uri


@pytest.fixture
def store(store_uri: str) -> Iterator[Store]:
    """A store opened as writer for the test, closed (lease released) after it."""
    with Store.open(store_uri, writer=True) as opened:
        yield opened
