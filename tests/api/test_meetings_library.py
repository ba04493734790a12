"""A whole library over the API: GET /api/meetings searches by title, filters by state and
by the day recorded, in pages; POST /api/queue {"matching": ...} queues every meeting those
filters select, in one change and one event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from queue_app.api import serializers
from queue_app.models import EntryStatus, Meeting, QueueEntry, QueueEvent
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


# --- POST /api/queue {"matching": ...} ---------------------------------------------------


def last_seq() -> int:
    return QueueEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def queue_matching(client, matching):
    return client.post("/api/queue", {"matching": matching}, format="json")


def active_titles() -> set[str]:
    return set(
        QueueEntry.objects.filter(status__in=["queued", "running", "retrying"]).values_list(
            "meeting__title", flat=True
        )
    )


def test_queue_all_matching_a_search_in_one_change_newest_first(client_for, alice, library):
    seq = last_seq()
    response = queue_matching(client_for(alice), {"search": "weekly"})

    assert response.status_code == 201, response.content
    body = response.json()
    # Weekly retro is waiting already; Weekly sync joins the line. Bob's "Weekly sync of bob"
    # matches the words but is not hers: never matched, not even as a refusal.
    assert [e["title"] for e in body["entries"]] == ["Weekly sync"]
    assert all(e["mine"] and e["status"] == "queued" for e in body["entries"])
    assert body["refused"] == [
        {
            "meeting_id": str(library["Weekly retro"].pk),
            "code": "already_queued",
            "detail": "This meeting is already in the queue.",
        }
    ]
    [event] = QueueEvent.objects.filter(seq__gt=seq)
    assert event.update_type == "meeting_added"
    assert [p["meeting_id"] for p in event.payload] == [library["Weekly sync"].pk]
    assert "Weekly sync of bob" not in active_titles()


def test_queue_all_matching_takes_every_filter(client_for, alice, library):
    matching = {"state": "not_queued", "recorded_from": "2026-12-01", "recorded_to": "2026-12-05"}
    body = queue_matching(client_for(alice), matching).json()
    # Not queued and recorded 1-5 December: Weekly sync (1st); Q4 plan (6th) is outside.
    assert [e["title"] for e in body["entries"]] == ["Weekly sync"]
    assert body["refused"] == []
    assert "Q4 plan" not in active_titles()


def test_queue_everything_of_yours_when_nothing_is_filtered(client_for, alice, bob, library):
    seq = last_seq()
    body = queue_matching(client_for(alice), {}).json()
    # Newest first: the line gets them in the library's order. Transferred, failed and
    # cancelled meetings go again; the ones in the line are refused, each with why.
    assert [e["title"] for e in body["entries"]] == [
        "Q4 plan",
        "Launch",
        "Hiring loop",
        "Weekly sync",
    ]
    positions = [e["position"] for e in body["entries"]]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert sorted((r["meeting_id"], r["code"]) for r in body["refused"]) == sorted(
        [
            (str(library["Weekly retro"].pk), "already_queued"),
            (str(library["Board review"].pk), "already_queued"),
        ]
    )
    assert QueueEvent.objects.filter(seq__gt=seq).count() == 1
    assert not QueueEntry.objects.filter(owner=bob).exists()


def test_a_matching_that_queues_nothing_answers_200_and_sends_no_event(client_for, alice, library):
    seq = last_seq()
    response = queue_matching(client_for(alice), {"search": "no such title"})
    assert response.status_code == 200
    assert response.json() == {"entries": [], "refused": []}
    response = queue_matching(client_for(alice), {"state": "waiting"})
    assert response.status_code == 200
    assert [r["code"] for r in response.json()["refused"]] == ["already_queued"]
    assert last_seq() == seq


def test_another_user_matches_only_their_own(client_for, bob, library):
    body = queue_matching(client_for(bob), {"search": "weekly"}).json()
    assert [e["title"] for e in body["entries"]] == ["Weekly sync of bob"]
    assert QueueEntry.objects.filter(meeting__owner=bob).count() == 1


def test_more_matching_than_the_limit_is_refused_whole(client_for, alice, library, monkeypatch):
    monkeypatch.setattr(serializers, "MAX_BULK", 2)
    seq, entries = last_seq(), QueueEntry.objects.count()

    # Exactly the limit (2 not queued) is queued; all 6 are refused, none of them queued.
    error = assert_error(queue_matching(client_for(alice), {}), 400, "invalid")
    assert "More than 2 meetings match" in error["detail"]
    assert "narrow" in error["fields"]["matching"][0]
    assert QueueEntry.objects.count() == entries and last_seq() == seq
    assert queue_matching(client_for(alice), {"state": "not_queued"}).status_code == 201
    assert QueueEntry.objects.count() == entries + 2
    assert last_seq() == seq + 1


def test_the_real_limit_is_5000(client_for, alice):
    Meeting.objects.bulk_create(
        Meeting(owner=alice, recording_id=900_000 + n, title=f"Old {n}") for n in range(5001)
    )
    error = assert_error(queue_matching(client_for(alice), {}), 400, "invalid")
    assert "More than 5,000 meetings match" in error["detail"]
    assert not QueueEntry.objects.exists() and last_seq() == 0
    # One meeting fewer is one change: 5,000 entries, one event.
    Meeting.objects.filter(title="Old 0").delete()
    response = queue_matching(client_for(alice), {})
    assert response.status_code == 201
    assert len(response.json()["entries"]) == 5000
    assert QueueEntry.objects.filter(status=EntryStatus.QUEUED).count() == 5000
    assert QueueEvent.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {"matching": "everything"},
        {"matching": {"state": "lost"}},
        {"matching": {"recorded_from": "yesterday"}},
        {"matching": {"recorded_from": "2026-12-05", "recorded_to": "2026-12-01"}},
        {"matching": {"search": "x" * 201}},
        {"matching": {}, "meeting_ids": [1]},
        {"matching": {}, "meeting_id": 1},
    ],
)
def test_bad_matching_is_refused_and_changes_nothing(client_for, alice, library, body):
    entries, seq = QueueEntry.objects.count(), last_seq()
    assert_error(client_for(alice).post("/api/queue", body, format="json"), 400, "invalid")
    assert QueueEntry.objects.count() == entries and last_seq() == seq


def test_matching_by_team(client_for, alice, library):
    Meeting.objects.filter(pk=library["Weekly sync"].pk).update(team="Sales")
    Meeting.objects.filter(pk=library["Q4 plan"].pk).update(team="Engineering")
    assert titles(client_for(alice).get("/api/meetings", {"team": "Sales"})) == ["Weekly sync"]
    body = queue_matching(client_for(alice), {"team": "Sales"}).json()
    assert [e["title"] for e in body["entries"]] == ["Weekly sync"]


def test_each_meeting_carries_what_fathom_says_of_it(client_for, alice, library):
    Meeting.objects.filter(pk=library["Launch"].pk).update(
        meeting_type="Customer call",
        meeting_url="https://zoom.example/j/1",
        team="Sales",
        media_kind="audio",
    )
    body = client_for(alice).get("/api/meetings", {"search": "launch"}).json()
    (meeting,) = body["results"]
    assert (
        meeting["meeting_type"],
        meeting["meeting_url"],
        meeting["team"],
        meeting["media_kind"],
    ) == ("Customer call", "https://zoom.example/j/1", "Sales", "audio")
