"""Clients for the API tests; throttle counters reset for each test."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.conftest import clear_cache


@pytest.fixture(autouse=True)
def _fresh_throttles():
    # Throttle counters live in the cache, which outlives a test: start each one clean.
    clear_cache()
    yield
    clear_cache()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Dozens of users a run; PBKDF2's 1,000,000 rounds would make that most of the time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def client_for(db):
    """An APIClient signed in (by session) as the given user."""

    def make(user) -> APIClient:
        client = APIClient()
        client.force_login(user)
        return client

    return make
