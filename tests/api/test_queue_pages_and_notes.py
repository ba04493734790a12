"""The optional `note` for the owner that the monitor sends with its actions: accepted by
every action, changing nothing else. (The monitor pages through a long line with GET
/api/queue/line: tests/api/test_queue_line.py.)"""

from __future__ import annotations

import pytest

from queue_app.models import EntryStatus, QueueEntry
from queue_app.retry_policy import Failure
from queue_app.services import line, transfers

pytestmark = pytest.mark.django_db

NOTE = {"note": "Fathom was down this morning; retried for you."}


@pytest.fixture(autouse=True)
def _no_dispatch(settings):
    settings.QUEUE_DISPATCH_ON_COMMIT = False


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
