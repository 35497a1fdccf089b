"""Fixtures shared by the whole suite: the simulated venue, an ArcticDB store (LMDB in tmp_path) and S3 through a moto
server in a separate process (an in-process ``ThreadedMotoServer`` deadlocks with ArcticDB: it holds the GIL in
``get_library``), one per session on a free loopback port; each test gets its own bucket.

A module changes what it gets by overriding the input fixture, not the fixture itself: `venue_config` (which venue
its module-scoped `venue` runs) and `store_uri` (where `store` opens, e.g. parametrised over LMDB and S3).
Plain helpers (waits, the Live client, record collectors) live in `tests/helpers.py`.

ArcticDB's storage lock waits `STORAGE_LOCK_WAIT_MS` here (see there): set for this process and, through the
environment, for every daemon, venue and benchmark process the suite starts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from arcticdb_ext import set_config_int
from botocore.exceptions import EndpointConnectionError

from hydra_daemon.sim.venue import VenueConfig, VenueThread
from hydra_daemon.store.arctic import Store
from hydra_daemon.store.uri import default_lmdb_uri
from tests.helpers import fast_config
from tests.s3_fault_proxy import ProxyProcess

STORAGE_LOCK_WAIT_MS = 10
"""ArcticDB takes a storage lock to compact a library's symbol list (a process's first `list_symbols` of a library,
so every snapshot and maintenance run of a fresh store): it writes the lock, sleeps `StorageLock.WaitMs`, then reads
it back to see whether another writer took it meanwhile (~1 s per library measured with arcticdb 6.28; ~2 s of each
pipeline run in a test). LMDB and the loopback moto server show a write at once, so the suite waits 10 ms; the
writer process does too (`store.arctic.WRITER_ARCTICDB_CONFIG`); a Reader keeps ArcticDB's default."""
_STORAGE_LOCK_WAIT_ENV = "ARCTICDB_StorageLock_WaitMs_int"  # ArcticDB's spelling: ARCTICDB_<setting>_int
os.environ[_STORAGE_LOCK_WAIT_ENV] = str(STORAGE_LOCK_WAIT_MS)
set_config_int("StorageLock.WaitMs", STORAGE_LOCK_WAIT_MS)


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


S3_ACCESS = "hydraTestAccessKey"
S3_SECRET = "hydraTestSecretValue"


@dataclass(frozen=True)
class MotoServer:
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ACCESS,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )

    def uri(self, bucket: str) -> str:
        return f"s3://127.0.0.1:{bucket}?access={S3_ACCESS}&secret={S3_SECRET}&port={self.port}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer(_free_port())
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(server.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:  # wait for startup; the test timeout bounds this loop
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with code {process.returncode}")
            try:
                server.client().list_buckets()
                break
            except EndpointConnectionError:
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait()


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the moto server: its store URI and a boto3 client."""

    name: str
    uri: str
    client: Any
    secret: str = S3_SECRET


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> S3Bucket:
    bucket = f"hydra-{uuid.uuid4().hex[:12]}"
    client = moto_server.client()
    client.create_bucket(Bucket=bucket)
    return S3Bucket(bucket, moto_server.uri(bucket), client)


@pytest.fixture
def s3_uri(s3_bucket: S3Bucket) -> str:
    return s3_bucket.uri


@pytest.fixture
def s3_proxy(moto_server: MotoServer) -> Iterator[ProxyProcess]:
    """A fault-injecting proxy process in front of the moto server (tests/s3_fault_proxy.py)."""
    running = ProxyProcess(moto_server.port)
    yield running
    running.close()
