"""Fixtures shared by every test: users and meetings."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model

from queue_app.models import Meeting

# The real processes (daphne, Celery worker, Fathom sandbox), one set for the session.
pytest_plugins = ["tests.processes"]

PASSWORD = "test-password-not-secret"
BROWSER_TESTS = Path(__file__).parent / "browser"
_recording_ids = itertools.count(10_000)


def clear_cache() -> None:
    """Delete this project's cache keys and Fathom rate-limit buckets only. cache.clear()
    would FLUSHDB the Redis database that the tests' broker and channel layer share."""
    cache = settings.CACHES["default"]
    for url, pattern in [
        (cache["LOCATION"], f"{cache['KEY_PREFIX']}:*"),
        (settings.REDIS_URL, "fathomloom:fathom-ratelimit:*"),
    ]:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(pattern))
        if keys:
            client.delete(*keys)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last: Playwright's sync API leaves an event loop set as
    running in the main thread (and DJANGO_ALLOW_ASYNC_UNSAFE set) until the session
    ends, which would break every later test that calls asyncio.run()."""
    items.sort(key=lambda item: BROWSER_TESTS in Path(str(item.fspath)).parents)


@pytest.fixture
def make_user(db):
    def make(username: str, *, is_staff: bool = False):
        return get_user_model().objects.create_user(
            username=username,
            password=PASSWORD,
            email=f"{username}@example.com",
            is_staff=is_staff,
            is_superuser=is_staff,
        )

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def staff(make_user):
    return make_user("admin", is_staff=True)


@pytest.fixture
def make_meeting(db):
    def make(owner, title: str | None = None) -> Meeting:
        recording_id = next(_recording_ids)
        return Meeting.objects.create(
            owner=owner,
            recording_id=recording_id,
            title=title or f"{owner.username}'s meeting {recording_id}",
        )

    return make
