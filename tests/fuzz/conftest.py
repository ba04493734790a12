"""The world the API fuzzer (test_api_fuzz.py) runs in: a user and staff with tokens,
meetings and queue entries with fixed ids, a Fathom account connected to the local sandbox.

The ids are fixed so that the fuzzer can name real rows (KNOWN_VALUES) besides the random
ones it makes up, which only ever reach "not found".
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.authtoken.models import Token

from fathom_sandbox import SANDBOX_KEYS
from queue_app import accounts
from queue_app.models import EntryStatus, Meeting, QueueEntry, QueueState
from queue_app.services import ordering

# Far past the ids PostgreSQL's sequence hands out in a test run (it is not rolled back),
# so that the meetings a sync imports never collide with them.
ALICE_MEETINGS = (9_000_101, 9_000_102, 9_000_103, 9_000_104)  # the last one: no entry
BOB_MEETING = 9_000_201
ALICE_QUEUED = uuid.UUID("00000000-0000-4000-8000-00000000a001")
ALICE_FAILED = uuid.UUID("00000000-0000-4000-8000-00000000a002")
ALICE_CANCELLED = uuid.UUID("00000000-0000-4000-8000-00000000a003")
BOB_QUEUED = uuid.UUID("00000000-0000-4000-8000-00000000b001")
ENTRIES = (
    (ALICE_QUEUED, ALICE_MEETINGS[0], EntryStatus.QUEUED),
    (ALICE_FAILED, ALICE_MEETINGS[1], EntryStatus.FAILED),
    (ALICE_CANCELLED, ALICE_MEETINGS[2], EntryStatus.CANCELLED),
    (BOB_QUEUED, BOB_MEETING, EntryStatus.QUEUED),
)
ENTRY_IDS = tuple(str(entry_id) for entry_id, _, _ in ENTRIES)

# Values of real things, by the name of the field or parameter that takes them: the fuzzer
# sometimes puts one in place of what it generated, so that requests also succeed, or fail
# further in than the input's shape (already queued, a key Fathom refuses).
KNOWN_VALUES: dict[str, tuple[Any, ...]] = {
    "entry_id": ENTRY_IDS,
    "entry_ids": (list(ENTRY_IDS), ENTRY_IDS[1:3], [ENTRY_IDS[3]]),
    "meeting_id": (*ALICE_MEETINGS, BOB_MEETING),
    "meeting_ids": (list(ALICE_MEETINGS), [ALICE_MEETINGS[3], BOB_MEETING]),
    # Fathom (the sandbox) takes the first two and refuses the third.
    "api_key": (*SANDBOX_KEYS, "fk_live_unknown0000000000000000"),
    "secret": ("whsec_" + base64.b64encode(b"fuzzing-webhook-secret-24").decode(),),
}


@dataclass(frozen=True)
class FuzzWorld:
    user_token: str  # alice's
    staff_token: str


@pytest.fixture(autouse=True)
def _fresh_cache(fresh_cache):
    """Throttle counters live in the cache, which outlives a test: each one starts clean."""


@pytest.fixture
def keep_db_connection() -> Iterator[None]:
    """Requests reach Django's WSGI handler directly, not through its test client, so do
    what the test client does: keep the test's connection (and its transaction) across
    requests instead of closing it at each request's start and end."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_world(make_user, sandbox_process, settings, keep_db_connection) -> FuzzWorld:
    # Fathom is the local sandbox, never the internet; its own rate limit is lifted so that
    # the fuzzer's syncs are not all 503s.
    sandbox_process.control.reset()
    sandbox_process.control.configure(rate_limit=100_000)
    settings.FATHOM_API_BASE_URL = sandbox_process.base_url

    alice, bob = make_user("alice"), make_user("bob")
    staff = make_user("admin", is_staff=True)
    for owner, meeting_ids in ((alice, ALICE_MEETINGS), (bob, (BOB_MEETING,))):
        for meeting_id in meeting_ids:
            Meeting.objects.create(
                id=meeting_id, owner=owner, recording_id=meeting_id, title=f"Meeting {meeting_id}"
            )
    # Made directly, not by the services, to have fixed ids; the line's order as enqueued.
    for order_key, (entry_id, meeting_id, status) in enumerate(ENTRIES, start=1):
        meeting = Meeting.objects.get(id=meeting_id)
        QueueEntry.objects.create(
            id=entry_id,
            meeting=meeting,
            owner=meeting.owner,
            status=status,
            order_key=order_key * 1000,
        )
    # The queue state's counts follow the rows written around the services.
    ordering.recount(QueueState.objects.get_or_create(pk=1)[0])
    accounts.fathom_account_set_key(user=alice, api_key=SANDBOX_KEYS[0])
    return FuzzWorld(
        user_token=Token.objects.create(user=alice).key,
        staff_token=Token.objects.create(user=staff).key,
    )
