"""Fixtures of the storage tests: a real S3-protocol server (moto's standalone server, a
process of its own on a free loopback port, one for the session), a fresh bucket per
test, and this process's recordings storage pointed at it."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from devtools import processes
from devtools.processes import LoggedProcess
from fathomloom.settings.storage import recordings_storage
from tests.processes import LOG_DIR, ROOT

# moto takes any key; these are not credentials of anything.
ACCESS_KEY = "fathomloom-test-access"
SECRET_KEY = "fathomloom-test-secret"
REGION = "us-east-1"
_buckets = itertools.count(1)


@dataclass
class S3Server:
    endpoint_url: str
    process: LoggedProcess

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def env(self, bucket: str) -> dict[str, str]:
        """The variables a process needs to keep recordings in `bucket`."""
        return {
            "RECORDINGS_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "AWS_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_S3_REGION_NAME": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    port = processes.free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = LoggedProcess(
        "moto-server",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env,
        log_dir=LOG_DIR,
        cwd=ROOT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        processes.wait_for_http(endpoint + "/", timeout=60)
    except RuntimeError:
        process.stop()
        raise
    yield S3Server(endpoint, process)
    process.stop()


@dataclass
class Bucket:
    name: str
    server: S3Server
    client: Any

    def keys(self) -> list[str]:
        return [o["Key"] for o in self.client.list_objects_v2(Bucket=self.name).get("Contents", [])]

    def unfinished_uploads(self) -> list[dict[str, Any]]:
        return self.client.list_multipart_uploads(Bucket=self.name).get("Uploads", [])

    def read(self, key: str, **params: Any) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key, **params)["Body"].read()


@pytest.fixture
def bucket(s3_server) -> Bucket:
    """An empty bucket of its own for the test."""
    client = s3_server.client()
    name = f"recordings-{os.getpid()}-{next(_buckets)}"
    client.create_bucket(Bucket=name)
    return Bucket(name, s3_server, client)


def s3_storage_entry(server: S3Server, bucket: str) -> dict[str, Any]:
    """STORAGES["recordings"] as RECORDINGS_STORAGE=s3 makes it, for this process."""
    return recordings_storage(
        "s3",
        bucket=bucket,
        endpoint_url=server.endpoint_url,
        region_name=REGION,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        querystring_expire=300,
    )


@pytest.fixture
def s3_recordings(settings, bucket, tmp_path) -> Bucket:
    """This process keeps recordings in `bucket`; MEDIA_ROOT is an empty folder that must
    stay empty."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PUBLIC_BASE_URL = "https://queue.example.com"
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": s3_storage_entry(bucket.server, bucket.name),
    }
    return bucket


@pytest.fixture
def fs_recordings(settings, tmp_path):
    """This process keeps recordings on the filesystem, under a MEDIA_ROOT of its own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PUBLIC_BASE_URL = "https://queue.example.com"
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": recordings_storage("filesystem"),
    }
    return settings.MEDIA_ROOT
