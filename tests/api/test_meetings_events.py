"""GET /api/meetings and GET /api/events: only your own meetings; every event, redacted."""

from __future__ import annotations

import pytest

from queue_app.services import line
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

BOB_TITLE = "Bob's confidential board review"


def test_meetings_lists_only_mine_with_the_active_entry(client_for, alice, bob, make_meeting):
    queued = make_meeting(alice, title="Queued one")
    idle = make_meeting(alice, title="Idle one")
    finished = make_meeting(alice, title="Cancelled one")
    make_meeting(bob, title=BOB_TITLE)
    entry = line.entry_enqueue(meeting=queued)
    line.entry_cancel(entry_id=line.entry_enqueue(meeting=finished).pk)

    response = client_for(alice).get("/api/meetings")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert "bob" not in response.content.decode().lower()
    by_id = {meeting["id"]: meeting for meeting in body["results"]}
    assert set(by_id) == {queued.pk, idle.pk, finished.pk}
    assert by_id[queued.pk]["active_entry_id"] == str(entry.pk)
    assert by_id[queued.pk]["active_entry_status"] == "queued"
    for meeting in (idle, finished):
        assert by_id[meeting.pk]["active_entry_id"] is None
        assert by_id[meeting.pk]["active_entry_status"] is None


def test_meetings_are_paginated(client_for, alice, make_meeting):
    for _ in range(3):
        make_meeting(alice)
    body = client_for(alice).get("/api/meetings?limit=2").json()
    assert (body["count"], len(body["results"])) == (3, 2)
    assert body["next"].endswith("/api/meetings?limit=2&offset=2")


@pytest.fixture
def history(alice, bob, make_meeting):
    """Five events: bob's entry added, alice's added, bob's moved, cancelled; queue cleared."""
    bobs = line.entry_enqueue(meeting=make_meeting(bob, title=BOB_TITLE))
    alices = line.entry_enqueue(meeting=make_meeting(alice, title="Alice's standup"))
    line.entry_move(entry_id=bobs.pk, position=2)
    line.entry_cancel(entry_id=bobs.pk)
    line.queue_clear()
    return bobs, alices


def test_alice_gets_every_event_but_never_bobs_details(client_for, alice, history):
    bobs, _ = history

    response = client_for(alice).get("/api/events")

    assert response.status_code == 200
    body = response.json()
    text = response.content.decode().lower()
    assert BOB_TITLE.lower() not in text
    assert "bob" not in text
    events = body["results"]
    assert [event["seq"] for event in events] == [1, 2, 3, 4, 5]
    assert [event["update_type"] for event in events] == [
        "meeting_added",
        "meeting_added",
        "position_updated",
        "meeting_removed",
        "queue_cleared",
    ]
    assert events[0]["queue"] == [
        {"id": str(bobs.pk), "position": 1, "status": "queued", "mine": False}
    ]
    assert events[0]["affected_user_id"] is None
    assert events[1]["queue"][0]["title"] == "Alice's standup"
    assert events[1]["affected_user_id"] == str(alice.pk)
    assert (body["after"], body["next"]) == (5, None)


def test_staff_and_the_owner_get_bobs_events_in_full(client_for, bob, staff, history):
    for user in (bob, staff):
        first = client_for(user).get("/api/events").json()["results"][0]
        assert first["queue"][0]["title"] == BOB_TITLE
        assert first["affected_user_id"] == str(bob.pk)


def test_events_page_forward_with_after(client_for, alice, history):
    client = client_for(alice)
    first = client.get("/api/events?limit=2").json()
    assert [event["seq"] for event in first["results"]] == [1, 2]
    assert first["after"] == 2
    assert first["next"].endswith("/api/events?after=2&limit=2")

    second = client.get(first["next"]).json()
    assert [event["seq"] for event in second["results"]] == [3, 4]
    last = client.get(second["next"]).json()
    assert [event["seq"] for event in last["results"]] == [5]
    assert (last["after"], last["next"]) == (5, None)

    # Caught up: nothing new, and `after` stays where the client is.
    assert client.get("/api/events?after=5").json() == {"results": [], "after": 5, "next": None}


@pytest.mark.parametrize(
    "query",
    ["after=-1", "after=abc", "after=1.5", f"after={2**63}", "limit=0", "limit=501"],
)
def test_events_with_a_bad_query_are_400(client_for, alice, history, query):
    body = assert_error(client_for(alice).get(f"/api/events?{query}"), 400, "invalid")
    assert set(body["fields"]) <= {"after", "limit"}
