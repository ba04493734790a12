"""Clients for the API tests; throttle counters reset for each test (client_for is in
tests/conftest.py)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient


@pytest.fixture(autouse=True)
def _fresh_cache(fresh_cache):
    """Throttle counters live in the cache, which outlives a test: each one starts clean."""


@pytest.fixture
def api() -> APIClient:
    return APIClient()
