"""A history that stays (issue 15): every outcome of a user's entries is stored with the
change that made it, served by GET /api/activity (newest first, paged, one's own), carried
live in the event to its owner only, and staff's notes reach the owner (and their inbox
for a cancellation)."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.management import call_command

from queue_app import tasks
from queue_app.events import Viewer, event_for_viewer, event_message
from queue_app.models import Activity, EntryStatus, QueueEntry, QueueEvent
from queue_app.services import line, transfers
from queue_app.services.activity import MAX_NOTE_LENGTH
from tests.helpers import assert_error
from tests.queue_helpers import fail_transfer, wait_to_retry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_dispatch(settings):
    settings.QUEUE_DISPATCH_ON_COMMIT = False


def run(worker: str = "w1") -> QueueEntry:
    entry = transfers.transfer_claim_next(worker=worker)
    assert entry is not None
    return entry


def activity(client, query: str = "") -> dict:
    response = client.get(f"/api/activity{query}")
    assert response.status_code == 200, response.content
    return response.json()


def test_every_outcome_is_in_the_owners_history_newest_first(
    client_for, alice, staff, make_meeting
):
    done, broken, dropped, moved, spare = (
        line.entry_enqueue(meeting=make_meeting(alice, title)).pk
        for title in ("Done", "Broken", "Dropped", "Moved", "Spare")
    )
    transfers.transfer_complete(
        entry_id=run().pk, worker="w1", result_url="https://loom.example/share/x"
    )
    fail_transfer(entry_id=run().pk, worker="w1", error="Fathom said no")
    owner = client_for(alice)
    assert owner.delete(f"/api/queue/{dropped}").status_code == 200
    response = client_for(staff).post(
        f"/api/queue/{spare}/move", {"position": 1, "note": "Urgent for the board"}, format="json"
    )
    assert response.status_code == 200
    assert owner.post(f"/api/queue/{broken}/retry").status_code == 200

    body = activity(owner)

    assert body["count"] == 5
    got = [(item["title"], item["kind"], item["by"]) for item in body["results"]]
    assert got == [
        ("Broken", "retried", "owner"),
        ("Spare", "moved", "staff"),
        ("Dropped", "cancelled", "owner"),
        ("Broken", "failed", "system"),
        ("Done", "completed", "system"),
    ]
    retried, staff_move, _, failed, completed = body["results"]
    assert completed["result_url"] == "https://loom.example/share/x"
    assert completed["entry_id"] == str(done)
    assert failed["reason"] == "Fathom said no"
    assert staff_move["note"] == "Urgent for the board" and staff_move["position"] == 1
    # Who acted, by name, is for staff; the owner learns "staff".
    assert staff_move["actor"] is None and "user" not in staff_move
    assert retried["note"] == "" and moved  # a move of another entry is not alice's outcome


def test_a_user_sees_only_their_own_history_and_staff_may_pick_a_user(
    client_for, alice, bob, staff, make_meeting
):
    line.entry_cancel(entry_id=line.entry_enqueue(meeting=make_meeting(alice, "A")).pk)
    bobs = line.entry_enqueue(meeting=make_meeting(bob, "B"))
    client_for(staff).delete(f"/api/queue/{bobs.pk}", {"note": "Duplicate"}, format="json")

    assert [i["title"] for i in activity(client_for(alice))["results"]] == ["A"]
    # Naming someone else is only staff's: a user still gets their own.
    assert [i["title"] for i in activity(client_for(alice), "?user=bob")["results"]] == ["A"]
    assert activity(client_for(staff))["results"] == []
    [item] = activity(client_for(staff), "?user=bob")["results"]
    assert (item["title"], item["by"], item["actor"], item["user"], item["note"]) == (
        "B",
        "staff",
        "admin",
        "bob",
        "Duplicate",
    )


def test_history_is_paged(client_for, alice, make_meeting):
    for n in range(7):
        line.entry_cancel(entry_id=line.entry_enqueue(meeting=make_meeting(alice, f"M{n}")).pk)
    owner = client_for(alice)

    first = activity(owner, "?limit=3")
    second = activity(owner, "?limit=3&offset=3")

    assert first["count"] == 7 and first["next"] and first["previous"] is None
    assert [i["title"] for i in first["results"]] == ["M6", "M5", "M4"]
    assert [i["title"] for i in second["results"]] == ["M3", "M2", "M1"]


def test_history_needs_a_sign_in(api):
    assert_error(api.get("/api/activity"), 401, "not_authenticated")


def test_staff_clear_with_a_note_reaches_each_owner(client_for, alice, bob, staff, make_meeting):
    line.entry_enqueue(meeting=make_meeting(alice, "Alice's"))
    line.entry_enqueue(meeting=make_meeting(bob, "Bob's"))

    response = client_for(staff).post(
        "/api/queue/clear", {"note": "Maintenance tonight"}, format="json"
    )

    assert response.json() == {"cancelled": 2}
    for user, title in ((alice, "Alice's"), (bob, "Bob's")):
        [item] = activity(client_for(user))["results"]
        assert (item["title"], item["kind"], item["by"], item["note"]) == (
            title,
            "cancelled",
            "staff",
            "Maintenance tonight",
        )


def test_the_note_travels_in_the_event_to_the_owner_and_staff_only(
    client_for, alice, bob, staff, make_meeting
):
    entry = line.entry_enqueue(meeting=make_meeting(alice, "Private"))
    client_for(staff).post("/api/queue/cancel", {"entry_ids": [str(entry.pk)], "note": "Spam"})
    event = QueueEvent.objects.order_by("-seq").first()
    message = event_message(event)

    for_owner = event_for_viewer(message, Viewer(user_id=alice.pk))
    for_other = event_for_viewer(message, Viewer(user_id=bob.pk))

    outcome = for_owner["queue"][0]["outcome"]
    assert outcome["kind"] == "cancelled" and outcome["by"] == "staff" and outcome["note"] == "Spam"
    assert outcome["activity_id"] == Activity.objects.get(user=alice).pk
    assert "outcome" not in for_other["queue"][0]
    assert "Spam" not in str(for_other)


def test_a_note_too_long_is_refused_and_changes_nothing(client_for, alice, staff, make_meeting):
    entry = line.entry_enqueue(meeting=make_meeting(alice))
    seq = QueueEvent.objects.order_by("-seq").first().seq
    staff_client = client_for(staff)
    long_note = "x" * (MAX_NOTE_LENGTH + 1)

    for response in (
        staff_client.delete(f"/api/queue/{entry.pk}", {"note": long_note}, format="json"),
        staff_client.post("/api/queue/clear", {"note": long_note}, format="json"),
        staff_client.post(
            "/api/queue/cancel", {"entry_ids": [str(entry.pk)], "note": long_note}, format="json"
        ),
        staff_client.post(
            f"/api/queue/{entry.pk}/move", {"position": 1, "note": long_note}, format="json"
        ),
        staff_client.post("/api/queue/clear", {"note": ["a list"]}, format="json"),
    ):
        assert response.status_code == 400, response.content
        assert response.json()["code"] == "invalid"
    entry.refresh_from_db()
    assert entry.status == EntryStatus.QUEUED
    assert QueueEvent.objects.order_by("-seq").first().seq == seq
    assert not Activity.objects.exists()


def test_a_refused_change_leaves_no_history(client_for, alice, make_meeting):
    entry = line.entry_enqueue(meeting=make_meeting(alice))
    line.entry_cancel(entry_id=entry.pk)
    before = Activity.objects.count()

    assert client_for(alice).delete(f"/api/queue/{entry.pk}").status_code == 409

    assert Activity.objects.count() == before


def test_a_failed_attempt_is_kept_with_its_next_try(client_for, alice, make_meeting):
    line.entry_enqueue(meeting=make_meeting(alice, "Flaky"))
    wait_to_retry(entry_id=run().pk, worker="w1", error="Fathom is busy", delay_seconds=40)

    [item] = activity(client_for(alice))["results"]

    assert (item["kind"], item["by"], item["reason"]) == ("retrying", "system", "Fathom is busy")
    assert item["next_attempt_at"] is not None


def test_staff_cancellations_are_emailed_with_the_note(client_for, alice, staff, make_meeting):
    first = line.entry_enqueue(meeting=make_meeting(alice, "Weekly sync"))
    second = line.entry_enqueue(meeting=make_meeting(alice, "Retro"))
    own = line.entry_enqueue(meeting=make_meeting(alice, "Mine to cancel"))
    client_for(alice).delete(f"/api/queue/{own.pk}")
    client_for(staff).post(
        "/api/queue/cancel",
        {"entry_ids": [str(first.pk), str(second.pk)], "note": "Out of quota"},
        format="json",
    )
    mail.outbox.clear()

    sent = tasks.notify_cancelled(list(Activity.objects.values_list("pk", flat=True)))

    assert sent == 1
    [message] = mail.outbox
    assert message.to == ["alice@example.com"]
    assert "Weekly sync" in message.body and "Retro" in message.body
    assert "Out of quota" in message.body
    # Her own cancellation is not news to her.
    assert "Mine to cancel" not in message.body


def test_manage_py_cancel_and_move_take_a_note(alice, make_meeting):
    first = line.entry_enqueue(meeting=make_meeting(alice, "One"))
    second = line.entry_enqueue(meeting=make_meeting(alice, "Two"))

    call_command("queue", "move", str(second.pk), "1", "--note", "Board meeting first")
    call_command("queue", "cancel", str(first.pk), "--note", "Recording is empty")

    notes = dict(Activity.objects.values_list("kind", "note"))
    assert notes == {"moved": "Board meeting first", "cancelled": "Recording is empty"}
    assert set(Activity.objects.values_list("by", flat=True)) == {"staff"}


def test_the_openapi_schema_documents_the_history(client_for, alice):
    schema = client_for(alice).get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/activity"]["get"]
    assert operation["operationId"] == "activity_list"
    names = {p["name"] for p in operation["parameters"]}
    assert {"user", "limit", "offset"} <= names
    cancel = schema["paths"]["/api/queue/clear"]["post"]
    assert "requestBody" in cancel


def test_the_pages_start_from_the_history(client_for, alice, bob, make_meeting):
    """The Queue page's "Done and failed" and My meetings' "Activity" are rendered from
    the stored history, so a reload keeps them."""
    line.entry_enqueue(meeting=make_meeting(alice, "Shipped"))
    transfers.transfer_complete(
        entry_id=run().pk, worker="w1", result_url="https://loom.example/share/s"
    )
    moved = line.entry_enqueue(meeting=make_meeting(alice, "Second"))
    line.entry_enqueue(meeting=make_meeting(alice, "Third"))
    line.entry_move(entry_id=moved.pk, position="bottom", note="Reordered")
    line.entry_enqueue(meeting=make_meeting(bob, "Bob secret"))
    client = client_for(alice)

    queue_page = client.get("/queue").content.decode()
    home_page = client.get("/").content.decode()

    assert 'id="activity-list"' in queue_page and "Done and failed" in queue_page
    assert "Shipped" in queue_page and "https://loom.example/share/s" in queue_page
    assert "Reordered" not in queue_page  # a move is not "done or failed"
    assert "Reordered" in home_page and "Shipped" in home_page
    assert "Bob secret" not in queue_page + home_page


def test_a_staff_cancellation_asks_for_the_email_after_commit(
    client_for, alice, staff, make_meeting, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(
        "queue_app.services.activity.current_app.send_task",
        lambda name, args: sent.append((name, args)),
    )
    mine = line.entry_enqueue(meeting=make_meeting(alice, "Mine"))
    theirs = line.entry_enqueue(meeting=make_meeting(alice, "Staff's to cancel"))

    with django_capture_on_commit_callbacks(execute=True):
        client_for(alice).delete(f"/api/queue/{mine.pk}")
    assert sent == []  # her own cancellation: no email
    with django_capture_on_commit_callbacks(execute=True):
        client_for(staff).delete(f"/api/queue/{theirs.pk}", {"note": "Dup"}, format="json")

    row = Activity.objects.get(entry=theirs)
    assert sent == [("queue_app.tasks.notify_cancelled", [[row.pk]])]
    # The task's name is the one the worker registers.
    assert tasks.notify_cancelled.name == "queue_app.tasks.notify_cancelled"


def test_staff_say_why_they_paused_until_the_queue_resumes(client_for, alice, staff, make_meeting):
    line.entry_enqueue(meeting=make_meeting(alice))
    staff_client, owner = client_for(staff), client_for(alice)
    assert_error(
        staff_client.post("/api/queue/pause", {"note": "x" * 501}, format="json"), 400, "invalid"
    )
    assert owner.get("/api/estimates").json()["paused"] is False

    answer = staff_client.post("/api/queue/pause", {"note": "Loom maintenance"}, format="json")

    assert answer.json() == {"paused": True, "changed": True}
    body = owner.get("/api/estimates").json()
    assert (body["paused"], body["pause_note"]) == (True, "Loom maintenance")
    assert "Loom maintenance" in owner.get("/queue").content.decode()
    staff_client.post("/api/queue/resume")
    assert owner.get("/api/estimates").json()["pause_note"] == ""
    call_command("queue", "pause", "--note", "Database upgrade")
    assert owner.get("/api/estimates").json()["pause_note"] == "Database upgrade"
