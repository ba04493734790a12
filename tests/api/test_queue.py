"""The queue over HTTP: who sees what, who may change what, and bad input changes nothing."""

from __future__ import annotations

import uuid

import pytest

from queue_app.models import EntryStatus, QueueEntry, QueueState
from queue_app.services import line
from tests.helpers import assert_error, queue_rows
from tests.protocol_schema import assert_valid_message

pytestmark = pytest.mark.django_db

BOB_TITLE = "Bob's confidential board review"


@pytest.fixture
def bob_entry(bob, make_meeting):
    return line.entry_enqueue(meeting=make_meeting(bob, title=BOB_TITLE))


@pytest.fixture
def alice_entry(alice, make_meeting):
    return line.entry_enqueue(meeting=make_meeting(alice, title="Alice's standup"))


def entry_url(entry_or_id, action: str = "") -> str:
    entry_id = getattr(entry_or_id, "pk", entry_or_id)
    return f"/api/queue/{entry_id}" + (f"/{action}" if action else "")


# --- reading the queue ----------------------------------------------------------------------


def test_alice_sees_her_entries_in_full_and_bobs_only_as_places(
    client_for, alice, bob, bob_entry, alice_entry
):
    response = client_for(alice).get("/api/queue")

    assert response.status_code == 200
    body = response.json()
    assert body["queue_length"] == 2
    assert body["seq"] == QueueState.objects.get().last_seq == 2
    text = response.content.decode().lower()
    assert BOB_TITLE.lower() not in text
    assert "bob" not in text
    theirs, mine = body["queue"]
    assert theirs == {"id": str(bob_entry.pk), "position": 1, "status": "queued", "mine": False}
    assert mine["title"] == "Alice's standup"
    assert mine["owner"] == "alice"
    assert (mine["mine"], mine["position"]) == (True, 2)


def test_staff_see_every_entry_in_full(client_for, staff, bob_entry, alice_entry):
    body = client_for(staff).get("/api/queue").json()
    assert [entry["title"] for entry in body["queue"]] == [BOB_TITLE, "Alice's standup"]
    assert [entry["owner"] for entry in body["queue"]] == ["bob", "alice"]


# --- enqueue --------------------------------------------------------------------------------


def test_enqueue_own_meeting_returns_the_full_entry_and_its_position(
    client_for, alice, make_meeting, bob_entry
):
    meeting = make_meeting(alice, title="Alice's retro")

    response = client_for(alice).post("/api/queue", {"meeting_id": meeting.pk}, format="json")

    assert response.status_code == 201
    body = response.json()
    entry = QueueEntry.objects.get(meeting=meeting)
    assert body["id"] == str(entry.pk)
    assert (body["position"], body["status"], body["mine"]) == (2, "queued", True)
    assert (body["title"], body["owner"], body["meeting_id"]) == (
        "Alice's retro",
        "alice",
        meeting.pk,
    )
    # No transfer has completed yet: nothing to estimate from, so no guess (estimates.py).
    assert body["eta_seconds"] is None
    # The entry is the wire format's, as docs/protocol.md documents it.
    snapshot = {
        "type": "QueueSnapshot",
        "version": 2,
        "seq": 1,
        "paused": False,
        "queue_length": 1,
        "waiting": 1,
        "head_places": 20,
        "queue": [body],
        "timestamp": "2026-12-02T10:00:00Z",
    }
    assert_valid_message(snapshot)


def test_someone_elses_meeting_is_not_found_like_a_missing_one(
    client_for, alice, bob, make_meeting
):
    client = client_for(alice)
    bobs = make_meeting(bob, title=BOB_TITLE)
    before = queue_rows()

    theirs = client.post("/api/queue", {"meeting_id": bobs.pk}, format="json")
    missing = client.post("/api/queue", {"meeting_id": bobs.pk + 1000}, format="json")

    assert_error(theirs, 404, "not_found")
    assert theirs.json() == missing.json()
    assert queue_rows() == before
    assert not bobs.entries.exists()


def test_queueing_the_same_meeting_twice_is_409_and_changes_nothing(
    client_for, alice, make_meeting
):
    client = client_for(alice)
    meeting = make_meeting(alice)
    assert client.post("/api/queue", {"meeting_id": meeting.pk}, format="json").status_code == 201
    before = queue_rows()

    response = client.post("/api/queue", {"meeting_id": meeting.pk}, format="json")

    assert_error(response, 409, "already_queued")
    assert queue_rows() == before


@pytest.mark.parametrize(
    "meeting_id",
    ["abc", "", True, 1.5, None, [], {}, 0, -1, 2**63, 10**40, "1; DROP TABLE"],
)
def test_enqueue_with_a_bad_meeting_id_is_400_and_changes_nothing(
    client_for, alice, alice_entry, meeting_id
):
    before = queue_rows()
    response = client_for(alice).post("/api/queue", {"meeting_id": meeting_id}, format="json")
    body = assert_error(response, 400, "invalid")
    assert "meeting_id" in body["fields"]
    assert queue_rows() == before


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"meeting_id": ', "application/json"),
        ("not json at all", "application/json"),
        ('{"meeting_id": 1' + "0" * 5000 + "}", "application/json"),
    ],
)
def test_malformed_json_is_400_and_changes_nothing(
    client_for, alice, alice_entry, body, content_type
):
    before = queue_rows()
    response = client_for(alice).post("/api/queue", body, content_type=content_type)
    assert_error(response, 400, "parse_error")
    assert queue_rows() == before


@pytest.mark.parametrize("body", ["[1, 2]", '"meeting"', "7", "null", "{}"])
def test_a_body_that_is_not_an_object_with_meeting_id_is_400(client_for, alice, body):
    before = queue_rows()
    response = client_for(alice).post("/api/queue", body, content_type="application/json")
    assert_error(response, 400, "invalid")
    assert queue_rows() == before


def test_an_unsupported_content_type_is_415(client_for, alice):
    response = client_for(alice).post("/api/queue", "meeting_id=1", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_form_encoded_enqueue_works_too(client_for, alice, make_meeting):
    meeting = make_meeting(alice)
    response = client_for(alice).post("/api/queue", {"meeting_id": str(meeting.pk)})
    assert response.status_code == 201


# --- cancel and retry -----------------------------------------------------------------------


def test_owner_cancels_then_a_second_cancel_is_409_and_changes_nothing(
    client_for, alice, alice_entry
):
    client = client_for(alice)
    response = client.delete(entry_url(alice_entry))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    alice_entry.refresh_from_db()
    assert alice_entry.status == EntryStatus.CANCELLED
    before = queue_rows()

    assert_error(client.delete(entry_url(alice_entry)), 409, "invalid_state")
    assert queue_rows() == before


@pytest.mark.parametrize(
    ("method", "action"), [("delete", ""), ("post", "retry")], ids=["cancel", "retry"]
)
def test_alice_cannot_touch_bobs_entry_and_learns_nothing(
    client_for, alice, bob_entry, method, action
):
    client = client_for(alice)
    if action == "retry":
        line.entry_cancel(entry_id=bob_entry.pk)  # retryable, so only ownership stops her
    before = queue_rows()

    theirs = getattr(client, method)(entry_url(bob_entry, action))
    missing = getattr(client, method)(entry_url(uuid.uuid4(), action))
    malformed = getattr(client, method)(entry_url("not-a-uuid", action))

    assert_error(theirs, 404, "not_found")
    assert theirs.json() == missing.json() == malformed.json()
    assert malformed.status_code == missing.status_code == 404
    assert queue_rows() == before


def test_owner_retries_a_cancelled_entry_back_to_the_end(client_for, alice, alice_entry, bob_entry):
    line.entry_cancel(entry_id=alice_entry.pk)
    response = client_for(alice).post(entry_url(alice_entry, "retry"))
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["position"], body["attempts"]) == ("queued", 2, 0)


def test_retrying_a_queued_entry_is_409_and_changes_nothing(client_for, alice, alice_entry):
    before = queue_rows()
    assert_error(client_for(alice).post(entry_url(alice_entry, "retry")), 409, "invalid_state")
    assert queue_rows() == before


def test_retrying_when_the_meeting_is_queued_again_is_409(client_for, alice, alice_entry):
    line.entry_cancel(entry_id=alice_entry.pk)
    line.entry_enqueue(meeting=alice_entry.meeting)
    before = queue_rows()
    assert_error(client_for(alice).post(entry_url(alice_entry, "retry")), 409, "already_queued")
    assert queue_rows() == before


def test_staff_cancel_and_retry_anyones_entry(client_for, staff, bob_entry):
    client = client_for(staff)
    assert client.delete(entry_url(bob_entry)).json()["status"] == "cancelled"
    retried = client.post(entry_url(bob_entry, "retry")).json()
    assert (retried["status"], retried["title"]) == ("queued", BOB_TITLE)


# --- staff controls -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "body"),
    [("move", {"position": 1}), ("clear", None), ("pause", None), ("resume", None)],
)
def test_non_staff_get_403_on_staff_controls_and_nothing_changes(
    client_for, alice, alice_entry, bob_entry, action, body
):
    url = entry_url(bob_entry, "move") if action == "move" else f"/api/queue/{action}"
    if action == "resume":
        line.queue_pause()
    before = queue_rows()
    assert_error(client_for(alice).post(url, body, format="json"), 403, "permission_denied")
    assert queue_rows() == before


def test_non_staff_get_403_on_move_of_their_own_entry(client_for, alice, alice_entry):
    response = client_for(alice).post(entry_url(alice_entry, "move"), {"position": 1})
    assert_error(response, 403, "permission_denied")


@pytest.fixture
def three_queued(alice, bob, make_meeting):
    return [line.entry_enqueue(meeting=make_meeting(owner)) for owner in (alice, bob, alice)]


def positions(client) -> list[str]:
    return [entry["id"] for entry in client.get("/api/queue").json()["queue"]]


@pytest.mark.parametrize(
    ("position", "expected"),
    [(1, [2, 0, 1]), ("top", [2, 0, 1]), (2, [0, 2, 1]), ("bottom", [1, 2, 0])],
)
def test_staff_move_an_entry(client_for, staff, three_queued, position, expected):
    client = client_for(staff)
    moving = three_queued[2] if position != "bottom" else three_queued[0]
    response = client.post(entry_url(moving, "move"), {"position": position}, format="json")
    assert response.status_code == 200
    ids = [str(three_queued[index].pk) for index in expected]
    assert positions(client) == ids
    assert response.json()["position"] == ids.index(str(moving.pk)) + 1


@pytest.mark.parametrize(
    ("position", "code"),
    [
        (0, "invalid"),
        (-1, "invalid"),
        ("middle", "invalid"),
        ("", "invalid"),
        ("1.5", "invalid"),
        (1.5, "invalid"),
        (True, "invalid"),
        (None, "invalid"),
        ([1], "invalid"),
        ({"at": 1}, "invalid"),
        (4, "invalid_position"),  # three in line
        (10**12, "invalid_position"),
        (10**40, "invalid_position"),
    ],
)
def test_move_to_a_bad_position_is_400_and_changes_nothing(
    client_for, staff, three_queued, position, code
):
    before = queue_rows()
    response = client_for(staff).post(
        entry_url(three_queued[0], "move"), {"position": position}, format="json"
    )
    assert_error(response, 400, code)
    assert queue_rows() == before


def test_move_without_a_position_is_400(client_for, staff, three_queued):
    before = queue_rows()
    body = assert_error(
        client_for(staff).post(entry_url(three_queued[0], "move"), {}, format="json"),
        400,
        "invalid",
    )
    assert "position" in body["fields"]
    assert queue_rows() == before


@pytest.mark.parametrize("entry_id", [uuid.uuid4(), "not-a-uuid", "1"])
def test_move_of_an_unknown_entry_is_404(client_for, staff, three_queued, entry_id):
    before = queue_rows()
    response = client_for(staff).post(entry_url(entry_id, "move"), {"position": 1}, format="json")
    assert_error(response, 404, "not_found")
    assert queue_rows() == before


def test_move_of_a_cancelled_entry_is_409(client_for, staff, three_queued):
    line.entry_cancel(entry_id=three_queued[0].pk)
    before = queue_rows()
    response = client_for(staff).post(
        entry_url(three_queued[0], "move"), {"position": 1}, format="json"
    )
    assert_error(response, 409, "invalid_state")
    assert queue_rows() == before


def test_staff_clear_the_line(client_for, staff, three_queued):
    client = client_for(staff)
    assert client.post("/api/queue/clear").json() == {"cancelled": 3}
    assert client.get("/api/queue").json()["queue"] == []
    assert client.post("/api/queue/clear").json() == {"cancelled": 0}


def test_staff_pause_and_resume(client_for, staff, alice):
    client = client_for(staff)
    assert client.post("/api/queue/pause").json() == {"paused": True, "changed": True}
    assert QueueState.objects.get().paused
    assert client_for(alice).get("/api/queue").json()["paused"] is True
    assert client.post("/api/queue/pause").json() == {"paused": True, "changed": False}
    assert client.post("/api/queue/resume").json() == {"paused": False, "changed": True}
    assert not QueueState.objects.get().paused


def test_a_wrong_method_gets_405_in_the_error_shape(client_for, alice, staff, alice_entry):
    assert_error(
        client_for(alice).put(entry_url(alice_entry), {}, format="json"), 405, "method_not_allowed"
    )
    assert_error(client_for(staff).delete("/api/queue/clear"), 405, "method_not_allowed")
