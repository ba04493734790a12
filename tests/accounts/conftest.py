"""Fixtures for the credential and import tests: API clients and a fake Fathom."""

from __future__ import annotations

import pytest

from queue_app import accounts
from tests.accounts.fakes import FakeFathom

# Shaped like a real key, and long and odd enough that finding it anywhere is no accident.
ALICE_KEY = "fk_live_4Qz9pLr7Xw2mVn8KtY3sJd6HbG1cAe5F"
BOB_KEY = "fk_live_Bob0000aaaa1111bbbb2222cccc3333"


@pytest.fixture(autouse=True)
def _fresh_cache(fresh_cache):
    """Throttle counters and Fathom rate-limit buckets cleared around each test."""


@pytest.fixture
def fathom(monkeypatch):
    """Replace FathomClient: every client made for a key is recorded in `made`."""

    class Fathom:
        valid_keys = {ALICE_KEY, BOB_KEY}
        pages: list = []
        fail = None
        made: list[FakeFathom] = []

        def client(self, api_key: str) -> FakeFathom:
            client = FakeFathom(
                api_key, valid_keys=self.valid_keys, pages=self.pages, fail=self.fail
            )
            self.made.append(client)
            return client

    fake = Fathom()
    fake.made = []
    monkeypatch.setattr(accounts, "fathom_client_for", fake.client)
    return fake


SANDBOX_ALICE_KEY = "sandbox-key-alice"  # 12 meetings, 1001..1012: three default pages of 5


@pytest.fixture
def sandbox(sandbox_process, settings):
    """The sandbox, freshly seeded, with FathomClient pointed at it."""
    sandbox_process.control.reset()
    settings.FATHOM_API_BASE_URL = sandbox_process.base_url
    yield sandbox_process.control
    sandbox_process.control.reset()  # no webhook registered here outlives the test


def meeting_list_requests(control) -> list[dict]:
    return [r for r in control.requests() if r["path"].endswith("/meetings")]
