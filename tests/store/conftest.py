"""Store test fixtures: LMDB stores in tmp_path and S3 through a moto server in a separate process.

An in-process ``ThreadedMotoServer`` deadlocks with ArcticDB (it holds the GIL in ``get_library``), so moto runs as
its own process on a free loopback port for the whole session; each test gets its own bucket.
"""

from __future__ import annotations

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
from botocore.exceptions import EndpointConnectionError

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
