"""GET /api/meetings for a whole library: search by title, filter by state and by the day
recorded, in pages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from queue_app.models import Meeting
from queue_app.services import line, transfers
from tests.helpers import assert_error
from tests.queue_helpers import fail_transfer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_dispatch(settings):
    settings.QUEUE_DISPATCH_ON_COMMIT = False


@pytest.fixture
def library(alice, bob, make_meeting):
    """Alice's meetings in every state, recorded on 1 to 6 December; one of bob's."""
    titles = ["Weekly sync", "Board review", "Weekly retro", "Hiring loop", "Launch", "Q4 plan"]
    meetings = {}
    for day, title in enumerate(titles, start=1):
        meeting = make_meeting(alice, title)
        meeting.recording_start_time = datetime(2026, 12, day, 9, 0, tzinfo=UTC)
        meeting.save()
        meetings[title] = meeting
    make_meeting(bob, "Weekly sync of bob")
    line.entry_enqueue(meeting=meetings["Board review"])  # it will be running
    failed = line.entry_enqueue(meeting=meetings["Hiring loop"])
    transfers.transfer_claim_next(worker="w")  # Board review runs
    transfers.transfer_claim_next(worker="w2")
    fail_transfer(entry_id=failed.pk, worker="w2", error="404")
    done = line.entry_enqueue(meeting=meetings["Launch"])
    transfers.transfer_claim_next(worker="w3")
    transfers.transfer_complete(entry_id=done.pk, worker="w3")
    line.entry_enqueue(meeting=meetings["Weekly retro"])  # waiting
    cancelled = line.entry_enqueue(meeting=meetings["Q4 plan"])
    line.entry_cancel(entry_id=cancelled.pk)
    return meetings


def titles(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [meeting["title"] for meeting in response.json()["results"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["Q4 plan", "Launch", "Hiring loop", "Weekly retro", "Board review", "Weekly sync"]),
        ({"search": "weekly"}, ["Weekly retro", "Weekly sync"]),
        ({"state": "not_queued"}, ["Q4 plan", "Weekly sync"]),
        ({"state": "waiting"}, ["Weekly retro"]),
        ({"state": "transferring"}, ["Board review"]),
        ({"state": "transferred"}, ["Launch"]),
        ({"state": "failed"}, ["Hiring loop"]),
        (
            {"recorded_from": "2026-12-02", "recorded_to": "2026-12-04"},
            ["Hiring loop", "Weekly retro", "Board review"],
        ),
        ({"search": "WEEKLY", "state": "waiting"}, ["Weekly retro"]),
    ],
)
def test_search_and_filters(client_for, alice, library, query, expected):
    assert titles(client_for(alice).get("/api/meetings", query)) == expected


def test_each_meeting_says_its_state_and_pages_hold(client_for, alice, library):
    client = client_for(alice)
    body = client.get("/api/meetings", {"limit": 2, "offset": 1}).json()
    assert body["count"] == 6
    assert [(m["title"], m["state"]) for m in body["results"]] == [
        ("Launch", "transferred"),
        ("Hiring loop", "failed"),
    ]
    assert "offset=3" in body["next"]


@pytest.mark.parametrize(
    "query",
    [{"state": "lost"}, {"recorded_from": "yesterday"}, {"search": "x" * 201}],
)
def test_bad_filters_are_refused(client_for, alice, query):
    assert_error(client_for(alice).get("/api/meetings", query), 400, "invalid")


def test_only_your_own_meetings(client_for, bob, library):
    assert titles(client_for(bob).get("/api/meetings", {"search": "weekly"})) == [
        "Weekly sync of bob"
    ]
    assert Meeting.objects.count() == 7
