"""Fixtures of the fault tests: private Redis and PostgreSQL servers they may break.

The machine's shared Redis and PostgreSQL are never stopped: other runs use them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.servers import PrivateRedis


@pytest.fixture(scope="session")
def private_redis() -> Iterator[PrivateRedis]:
    try:
        server = PrivateRedis()
    except FileNotFoundError as missing:
        pytest.skip(f"fault tests need a private Redis: {missing}")
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_server(private_redis: PrivateRedis) -> Iterator[PrivateRedis]:
    """The private Redis, running and empty at the start of the test."""
    if private_redis.process is None or private_redis.process.poll() is not None:
        private_redis.start()
    import redis

    redis.Redis.from_url(private_redis.url()).flushall()
    yield private_redis
    if private_redis.process is None or private_redis.process.poll() is not None:
        private_redis.start()


@pytest.fixture(scope="session")
def fault_stack(fathom_sandbox):
    """The whole service on a private PostgreSQL and Redis (tests/faults/stack.py), one for
    the session: the fault suite may restart any part of it."""
    from tests.faults.stack import Stack

    try:
        stack = Stack(fathom_sandbox)
    except FileNotFoundError as missing:
        pytest.skip(f"the fault suite needs private servers: {missing}")
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
