"""GET /api/queue in pages (the monitor pages through a long line with it), and the
optional `note` for the owner that the monitor sends with its actions: accepted by every
action, changing nothing else (another change stores and delivers notes)."""

from __future__ import annotations

import pytest

from queue_app.models import EntryStatus, QueueEntry
from queue_app.retry_policy import Failure
from queue_app.services import line, transfers
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

NOTE = {"note": "Fathom was down this morning; retried for you."}


@pytest.fixture(autouse=True)
def _no_dispatch(settings):
    settings.QUEUE_DISPATCH_ON_COMMIT = False


def places(body: dict) -> list[int]:
    return [entry["position"] for entry in body["queue"] if entry["position"] is not None]


def test_the_line_in_pages(client_for, staff, alice, make_meeting):
    entries = [line.entry_enqueue(meeting=make_meeting(alice)) for _ in range(7)]
    transfers.transfer_claim_next(worker="w")  # the first one runs: not in line
    operator = client_for(staff)

    whole = operator.get("/api/queue").json()
    assert places(whole) == [1, 2, 3, 4, 5, 6] and whole["queue_length"] == 7

    second = operator.get("/api/queue", {"offset": 2, "limit": 2}).json()
    # The running entry, then places 3 and 4, in full for staff; the length of it all.
    assert [e["id"] for e in second["queue"]] == [str(e.id) for e in entries[:1] + entries[3:5]]
    assert places(second) == [3, 4] and second["queue_length"] == 7
    assert second["queue"][1]["title"] == str(entries[3].meeting)
    assert places(operator.get("/api/queue", {"offset": 6, "limit": 50}).json()) == []
    assert places(operator.get("/api/queue", {"limit": 1}).json()) == [1]


def test_pages_are_redacted_like_the_snapshot(client_for, alice, bob, make_meeting):
    line.entry_enqueue(meeting=make_meeting(bob))
    mine = line.entry_enqueue(meeting=make_meeting(alice))
    page = client_for(alice).get("/api/queue", {"limit": 5}).json()["queue"]
    assert "title" not in page[0] and "owner" not in page[0]  # bob's: anonymous
    assert page[1]["id"] == str(mine.id) and page[1]["title"]


@pytest.mark.parametrize(
    "query",
    [{"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"offset": -1, "limit": 5}, {"limit": "1e3"}],
)
def test_bad_page_parameters_are_refused(client_for, staff, query):
    response = client_for(staff).get("/api/queue", query)
    assert_error(response, 400, "invalid")


def test_every_monitor_action_takes_a_note_and_does_only_its_change(
    client_for, staff, alice, make_meeting
):
    operator = client_for(staff)
    first, second, third = (line.entry_enqueue(meeting=make_meeting(alice)) for _ in range(3))

    moved = operator.post(f"/api/queue/{third.id}/move", {"position": 1, **NOTE}, format="json")
    assert moved.status_code == 200 and moved.json()["position"] == 1

    cancelled = operator.delete(f"/api/queue/{first.id}", NOTE, format="json")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"

    retried = operator.post(f"/api/queue/{first.id}/retry", NOTE, format="json")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"

    transfers.transfer_claim_next(worker="w")
    gone = Failure("404", transient=False, kind="fathom_rejected")
    transfers.transfer_retry_or_fail(entry_id=third.id, worker="w", failure=gone)
    bulk = operator.post(
        "/api/queue/retry", {"matching": {"error_kind": "fathom_rejected"}, **NOTE}, format="json"
    )
    assert bulk.status_code == 200 and [e["id"] for e in bulk.json()["entries"]] == [str(third.id)]

    everything_of_alice = {"matching": {"owner": "alice"}, **NOTE}
    bulk = operator.post("/api/queue/cancel", everything_of_alice, format="json")
    assert bulk.status_code == 200 and len(bulk.json()["entries"]) == 3
    assert not QueueEntry.objects.filter(status=EntryStatus.QUEUED).exists()
    assert second.pk in {e.pk for e in QueueEntry.objects.filter(status=EntryStatus.CANCELLED)}
