"""Fixtures of the storage tests: a real S3 API on loopback (moto's threaded server), a fresh
bucket per test, and the fault-injection proxy of ``s3_fixtures`` in front of the server.

Credentials are fake and come through the standard AWS chain (environment variables), the way
streamd reads real ones; moto accepts any.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer
from s3_fixtures import FaultProxy, bucket_name


@pytest.fixture(scope="session")
def aws_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", os.devnull)  # nothing from this machine's ~/.aws
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.delenv("AWS_PROFILE", raising=False)
        yield


@pytest.fixture(scope="session")
def moto_endpoint(aws_env: None) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    """A new, empty bucket of this test's own."""
    name = bucket_name()
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
async def proxy(moto_endpoint: str) -> AsyncIterator[FaultProxy]:
    host, port = moto_endpoint.removeprefix("http://").rsplit(":", 1)
    p = FaultProxy((host, int(port)))
    await p.start()
    try:
        yield p
    finally:
        await p.close()
