"""Bulk changes over HTTP: many meetings queued, entries cancelled or retried, each as one
change and one event, with a reason for every item refused."""

from __future__ import annotations

import pytest

from queue_app.models import EntryStatus, QueueEntry, QueueEvent
from queue_app.retry_policy import Failure
from queue_app.services import line, transfers
from tests.helpers import assert_error
from tests.queue_helpers import fail_transfer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_dispatch(settings):
    settings.QUEUE_DISPATCH_ON_COMMIT = False


def events_since(seq: int) -> list[QueueEvent]:
    return list(QueueEvent.objects.filter(seq__gt=seq).order_by("seq"))


def last_seq() -> int:
    event = QueueEvent.objects.order_by("-seq").first()
    return event.seq if event else 0


def test_queue_many_meetings_in_one_change(client_for, alice, bob, make_meeting):
    mine = [make_meeting(alice, f"Meeting {n}") for n in range(3)]
    already = make_meeting(alice, "Already in line")
    line.entry_enqueue(meeting=already)
    theirs = make_meeting(bob)
    seq = last_seq()
    ids = [mine[2].pk, mine[0].pk, theirs.pk, 10**9, mine[0].pk, already.pk, mine[1].pk]

    response = client_for(alice).post("/api/queue", {"meeting_ids": ids}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert [e["meeting_id"] for e in body["entries"]] == [mine[2].pk, mine[0].pk, mine[1].pk]
    assert [e["position"] for e in body["entries"]] == [2, 3, 4]
    assert all(e["mine"] and e["status"] == "queued" for e in body["entries"])
    assert body["refused"] == [
        {
            "meeting_id": str(theirs.pk),
            "code": "not_yours",
            "detail": "This meeting is someone else's.",
        },
        {"meeting_id": str(10**9), "code": "not_found", "detail": "No such meeting."},
        {
            "meeting_id": str(already.pk),
            "code": "already_queued",
            "detail": "This meeting is already in the queue.",
        },
    ]
    [event] = events_since(seq)
    assert event.update_type == "meeting_added" and len(event.payload) == 3
    assert [p["position"] for p in event.payload] == [2, 3, 4]


def test_a_bulk_that_queues_nothing_answers_200_and_sends_no_event(
    client_for, alice, bob, make_meeting
):
    seq = last_seq()
    response = client_for(alice).post(
        "/api/queue", {"meeting_ids": [make_meeting(bob).pk]}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["entries"] == []
    assert events_since(seq) == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"meeting_id": 1, "meeting_ids": [2]},
        {"meeting_ids": []},
        {"meeting_ids": list(range(1, 5002))},
        {"meeting_ids": ["x"]},
        {"meeting_ids": "1,2"},
    ],
)
def test_bad_bulk_input_is_refused(client_for, alice, body):
    assert_error(client_for(alice).post("/api/queue", body, format="json"), 400, "invalid")


def test_cancel_several_in_one_event_and_only_your_own(client_for, alice, bob, make_meeting):
    mine = [line.entry_enqueue(meeting=make_meeting(alice)) for _ in range(3)]
    theirs = line.entry_enqueue(meeting=make_meeting(bob))
    seq = last_seq()
    ids = [str(mine[0].pk), str(theirs.pk), "garbage", str(mine[2].pk)]

    body = client_for(alice).post("/api/queue/cancel", {"entry_ids": ids}, format="json").json()

    assert [e["id"] for e in body["entries"]] == [str(mine[0].pk), str(mine[2].pk)]
    assert all(e["status"] == "cancelled" for e in body["entries"])
    # Someone else's entry is answered like one that does not exist.
    assert [(r["entry_id"], r["code"]) for r in body["refused"]] == [
        (str(theirs.pk), "not_found"),
        ("garbage", "not_found"),
    ]
    [event] = events_since(seq)
    assert event.update_type == "meeting_removed" and len(event.payload) == 2
    assert QueueEntry.objects.get(pk=theirs.pk).status == EntryStatus.QUEUED
    assert QueueEntry.objects.get(pk=mine[1].pk).status == EntryStatus.QUEUED


def test_staff_retry_several_in_one_event(client_for, staff, alice, bob, make_meeting):
    failed = []
    for owner in (alice, bob):
        entry = line.entry_enqueue(meeting=make_meeting(owner))
        transfers.transfer_claim_next(worker="w")
        fail_transfer(entry_id=entry.pk, worker="w", error="404")
        failed.append(entry)
    waiting = line.entry_enqueue(meeting=make_meeting(alice))
    seq = last_seq()
    ids = [str(failed[1].pk), str(waiting.pk), str(failed[0].pk)]

    body = client_for(staff).post("/api/queue/retry", {"entry_ids": ids}, format="json").json()

    assert [e["id"] for e in body["entries"]] == [str(failed[1].pk), str(failed[0].pk)]
    assert [e["position"] for e in body["entries"]] == [2, 3]
    assert [(r["entry_id"], r["code"]) for r in body["refused"]] == [
        (str(waiting.pk), "invalid_state")
    ]
    [event] = events_since(seq)
    assert event.update_type == "task_retried" and len(event.payload) == 2


def test_anonymous_callers_are_refused(api):
    assert_error(
        api.post("/api/queue/cancel", {"entry_ids": ["x"]}, format="json"), 401, "not_authenticated"
    )


def _failed(owner, make_meeting, kind: str) -> QueueEntry:
    entry = line.entry_enqueue(meeting=make_meeting(owner))
    transfers.transfer_claim_next(worker="w")
    transfers.transfer_retry_or_fail(
        entry_id=entry.pk, worker="w", failure=Failure(f"{kind}!", transient=False, kind=kind)
    )
    return entry


def test_staff_retry_every_failure_of_a_kind_in_one_event(
    client_for, staff, alice, bob, make_meeting
):
    rejected = [
        _failed(alice, make_meeting, "fathom_rejected"),
        _failed(bob, make_meeting, "fathom_rejected"),
    ]
    other = _failed(alice, make_meeting, "upload_failed")
    seq = last_seq()

    body = (
        client_for(staff)
        .post("/api/queue/retry", {"matching": {"error_kind": "fathom_rejected"}}, format="json")
        .json()
    )

    assert {e["id"] for e in body["entries"]} == {str(e.pk) for e in rejected}
    assert body["refused"] == []
    [event] = events_since(seq)
    assert event.update_type == "task_retried" and len(event.payload) == 2
    assert QueueEntry.objects.get(pk=other.pk).status == EntryStatus.FAILED


def test_cancel_all_of_a_users_waiting_entries(client_for, staff, alice, bob, make_meeting):
    alices = [line.entry_enqueue(meeting=make_meeting(alice)) for _ in range(3)]
    bobs = line.entry_enqueue(meeting=make_meeting(bob))
    body = (
        client_for(staff)
        .post("/api/queue/cancel", {"matching": {"owner": "alice"}}, format="json")
        .json()
    )
    assert {e["id"] for e in body["entries"]} == {str(e.pk) for e in alices}
    assert QueueEntry.objects.get(pk=bobs.pk).status == EntryStatus.QUEUED


def test_a_user_matching_reaches_only_their_own_entries(client_for, alice, bob, make_meeting):
    mine = line.entry_enqueue(meeting=make_meeting(alice))
    theirs = line.entry_enqueue(meeting=make_meeting(bob))
    body = (
        client_for(alice)
        .post("/api/queue/cancel", {"matching": {"owner": "bob"}}, format="json")
        .json()
    )
    assert [e["id"] for e in body["entries"]] == [str(mine.pk)]
    assert QueueEntry.objects.get(pk=theirs.pk).status == EntryStatus.QUEUED


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/queue/cancel", {"matching": {"error_kind": "x"}}),
        ("/api/queue/cancel", {"matching": {}, "entry_ids": ["x"]}),
        ("/api/queue/retry", {}),
        ("/api/queue/retry", {"matching": "everything"}),
    ],
)
def test_bad_matching_is_refused(client_for, staff, path, body):
    assert_error(client_for(staff).post(path, body, format="json"), 400, "invalid")
