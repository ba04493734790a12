"""A real Fathom sandbox process for the whole session, reset before every test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from fathom_sandbox.testing import SandboxControl, SandboxProcess
from queue_app.integrations.fathom import FathomClient

ALICE_KEY = "sandbox-key-alice"
BOB_KEY = "sandbox-key-bob"


@pytest.fixture(scope="session")
def sandbox(sandbox_process) -> SandboxProcess:
    """The session's sandbox (tests/conftest.py); `control` resets it for each test."""
    return sandbox_process


@pytest.fixture
def control(sandbox: SandboxProcess) -> Iterator[SandboxControl]:
    assert sandbox.control is not None
    sandbox.control.reset()
    yield sandbox.control
    # Reset afterwards too: the sandbox is the session's, and a short signed-URL lifetime
    # or a registered webhook left behind would reach the next test using it.
    sandbox.control.reset()


@pytest.fixture
def alice_client(sandbox: SandboxProcess, control: SandboxControl) -> Iterator[FathomClient]:
    with FathomClient(ALICE_KEY, base_url=sandbox.base_url, timeout=5.0) as client:
        yield client


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def bucket_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A Redis key prefix of this test's own, removed afterwards."""
    prefix = f"test-fathom-ratelimit:{uuid.uuid4().hex}"
    yield prefix
    for key in redis_client.scan_iter(f"{prefix}:*"):
        redis_client.delete(key)
