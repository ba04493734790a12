"""Importing a user's meetings from Fathom: every page, once, and nothing on failure."""

from __future__ import annotations

import pytest

from queue_app import accounts, importing
from queue_app.integrations.fathom import FathomUnavailable, parse_meeting
from queue_app.models import Meeting, QueueEntry
from tests.accounts.conftest import ALICE_KEY, SANDBOX_ALICE_KEY, meeting_list_requests
from tests.accounts.fakes import FakeFathom, meeting_json
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

SYNC = "/api/meetings/sync"


def pages(*recording_id_ranges: range) -> list[list[dict]]:
    return [[meeting_json(rid) for rid in ids] for ids in recording_id_ranges]


# --- the service, with a stand-in for Fathom -------------------------------------------------


def test_sync_imports_every_page_and_a_second_sync_creates_nothing(alice):
    client = FakeFathom(ALICE_KEY, valid_keys={ALICE_KEY}, pages=pages(range(1, 6), range(6, 9)))

    first = importing.meetings_sync(user=alice, client=client)
    second = importing.meetings_sync(user=alice, client=client)

    assert first == importing.SyncResult(created=8, updated=0, unchanged=0)
    assert second == importing.SyncResult(created=0, updated=0, unchanged=8)
    assert client.pages_fetched == 4
    assert sorted(Meeting.objects.filter(owner=alice).values_list("recording_id", flat=True)) == (
        list(range(1, 9))
    )
    assert not QueueEntry.objects.exists()  # importing never queues


def test_sync_updates_a_changed_meeting_in_place(alice):
    importing.meetings_sync(
        user=alice, client=FakeFathom(ALICE_KEY, valid_keys={ALICE_KEY}, pages=pages(range(1, 3)))
    )
    renamed = [[meeting_json(1, title="Renamed"), meeting_json(2)]]

    result = importing.meetings_sync(
        user=alice, client=FakeFathom(ALICE_KEY, valid_keys={ALICE_KEY}, pages=renamed)
    )

    assert result == importing.SyncResult(created=0, updated=1, unchanged=1)
    assert Meeting.objects.get(owner=alice, recording_id=1).title == "Renamed"
    assert Meeting.objects.count() == 2


def test_the_same_recording_for_two_users_is_two_meetings(alice, bob):
    for user in (alice, bob):
        importing.meetings_sync(
            user=user,
            client=FakeFathom(ALICE_KEY, valid_keys={ALICE_KEY}, pages=pages(range(1, 2))),
        )

    assert sorted(Meeting.objects.values_list("owner__username", flat=True)) == ["alice", "bob"]


def test_a_sync_that_fails_on_a_later_page_writes_nothing(alice):
    class FailsOnPageTwo(FakeFathom):
        def iter_meetings(self, **filters):
            yield from super().iter_meetings(**filters)
            raise FathomUnavailable("Fathom failed with 503 while listing meetings", status=503)

    client = FailsOnPageTwo(ALICE_KEY, valid_keys={ALICE_KEY}, pages=pages(range(1, 6)))

    with pytest.raises(accounts.FathomUnreachable):
        importing.meetings_sync(user=alice, client=client)
    assert not Meeting.objects.exists()


def test_long_titles_are_cut_and_unstorable_urls_left_out(alice):
    long_meeting = meeting_json(1, title="T" * 600, share_url="https://x.example/" + "a" * 1000)

    meeting, created = importing.meeting_upsert(
        owner=alice,
        meeting=parse_meeting(long_meeting),
    )

    meeting.refresh_from_db()
    assert created and len(meeting.title) == 500 and meeting.share_url == ""
    assert meeting.raw["share_url"] == long_meeting["share_url"]  # kept whole in raw


# --- the endpoint, against the Fathom sandbox -------------------------------------------------


@pytest.fixture
def alice_connected(alice, sandbox, client_for):
    client = client_for(alice)
    assert (
        client.post(
            "/api/credentials/fathom", {"api_key": SANDBOX_ALICE_KEY}, format="json"
        ).status_code
        == 200
    )
    sandbox.clear_requests()
    return client


def test_the_endpoint_imports_all_pages_once(alice, alice_connected, sandbox):
    first = alice_connected.post(SYNC)
    requests_first = meeting_list_requests(sandbox)
    second = alice_connected.post(SYNC)

    assert first.status_code == 200, first.content
    assert first.json() == {"created": 12, "updated": 0, "unchanged": 0}
    assert second.json() == {"created": 0, "updated": 0, "unchanged": 12}
    assert len(requests_first) == 3  # 12 meetings in pages of 5
    ids = sorted(Meeting.objects.filter(owner=alice).values_list("recording_id", flat=True))
    assert ids == list(range(1001, 1013))
    assert Meeting.objects.filter(owner=alice).exclude(title="").count() == 12


def test_without_a_key_sync_is_400_fathom_not_connected(alice, client_for, sandbox):
    assert_error(client_for(alice).post(SYNC), 400, "fathom_not_connected")
    assert meeting_list_requests(sandbox) == []


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"fault": "status", "status": 503}, 503, "fathom_unavailable"),
        ({"fault": "429", "retry_after": 9}, 503, "fathom_unavailable"),
        ({"fault": "reset"}, 503, "fathom_unavailable"),
        ({"fault": "malformed_json"}, 502, "fathom_bad_response"),
        ({"fault": "wrong_types"}, 502, "fathom_bad_response"),
        ({"fault": "status", "status": 401}, 400, "fathom_key_rejected"),
    ],
)
def test_fathom_failing_on_any_page_is_a_clear_error_and_imports_nothing(
    alice_connected, sandbox, fault, status, code
):
    kind = fault.pop("fault")
    sandbox.add_fault(kind, match="/meetings", times=1, **fault)

    response = alice_connected.post(SYNC)

    assert_error(response, status, code)
    assert not Meeting.objects.exists()


def test_a_sync_keeps_what_users_filter_and_read_by(client_for, alice, sandbox):
    client = client_for(alice)
    client.post("/api/credentials/fathom", {"api_key": SANDBOX_ALICE_KEY}, format="json")
    assert client.post(SYNC).status_code == 200

    meetings = {m.recording_id: m for m in Meeting.objects.filter(owner=alice)}
    typed = meetings[1002]  # the seed's types rotate: 1002 % 3 == 0 is a "Customer call"
    assert typed.meeting_type == "Customer call"
    assert typed.meeting_url == "https://meet.example/sandbox-1002"
    assert typed.team in ("Sales", "Engineering")
    assert typed.summary.startswith("## Summary")
    assert typed.transcript == [
        {"speaker": "Alice Johnson", "text": f"Welcome to {typed.title}.", "timestamp": "00:00:05"}
    ]
    assert {m.meeting_type for m in meetings.values()} == {"Customer call", "Internal sync", ""}
    assert {m.team for m in meetings.values()} == {"Sales", "Engineering"}
    listed = meeting_list_requests(sandbox)
    assert all("include_transcript=true" in r["query"] for r in listed[1:])  # after the check


def test_a_listing_without_the_transcript_keeps_the_stored_one(alice):
    with_transcript = meeting_json(
        1, transcript=[{"speaker": {"display_name": "A"}, "text": "hi", "timestamp": "00:00:01"}]
    )
    importing.meetings_sync(
        user=alice, client=FakeFathom(ALICE_KEY, valid_keys={ALICE_KEY}, pages=[[with_transcript]])
    )
    importing.meetings_sync(
        user=alice, client=FakeFathom(ALICE_KEY, valid_keys={ALICE_KEY}, pages=[[meeting_json(1)]])
    )
    assert Meeting.objects.get().transcript == [
        {"speaker": "A", "text": "hi", "timestamp": "00:00:01"}
    ]
