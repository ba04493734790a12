"""Fixtures shared by every test: users, meetings, signed-in API clients, a clean cache,
the Fathom sandbox. Plain helpers (PASSWORD, clear_cache...) are in tests/helpers.py."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from queue_app.models import Meeting
from queue_app.services.changes import dispatch_started
from tests.helpers import PASSWORD, clear_cache

# The real processes (daphne, Celery worker, Fathom sandbox), one set for the session.
pytest_plugins = ["tests.processes"]

BROWSER_TESTS = Path(__file__).parent / "browser"
_recording_ids = itertools.count(10_000)


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


@pytest.fixture
def client_for(db):
    """client_for(user) -> an APIClient signed in (by session) as that user."""

    def make(user) -> APIClient:
        client = APIClient()
        client.force_login(user)
        return client

    return make


@pytest.fixture(autouse=True)
def _no_dispatch_asked() -> None:
    """No test starts with a dispatch asked for by another (services.changes: one at a
    time), or its changes would not ask for theirs until the flag expired."""
    dispatch_started()


@pytest.fixture
def fresh_cache():
    """Throttle counters (in the cache) and Fathom rate-limit buckets (in Redis) outlive a
    test: cleared before and after it. A directory's conftest makes it autouse."""
    clear_cache()
    yield
    clear_cache()


@pytest.fixture(scope="session")
def sandbox_process():
    """The local Fathom sandbox with its default limits, a real HTTP server in its own
    process, one for the session (reset it before use: its control API)."""
    from fathom_sandbox.testing import SandboxProcess

    with SandboxProcess() as process:
        yield process
