"""Every attempt of every entry is kept: GET /api/queue/{id} shows them, the monitor counts
failures from them, and retrying an entry never erases an earlier failure."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from queue_app import selectors
from queue_app.models import QueueEntry
from queue_app.retry_policy import Failure
from queue_app.services import line, transfers
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db
WORKER = "host:1"


@pytest.fixture(autouse=True)
def _quiet(settings):
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    settings.QUEUE_RETRY_BASE_SECONDS = 0


def run(entry: QueueEntry) -> None:
    claimed = transfers.transfer_claim_next()
    assert claimed is not None and claimed.pk == entry.pk
    assert transfers.transfer_begin(entry_id=entry.pk, worker=WORKER)


def test_a_retried_failure_still_counts_and_shows(client_for, alice, staff, make_meeting):
    entry = line.entry_enqueue(meeting=make_meeting(alice, "Board review"))
    since = timezone.now() - timedelta(minutes=1)
    run(entry)
    rate_limited = Failure("Fathom asked to wait.", transient=True, retry_after=0, kind="x429")
    transfers.transfer_retry_or_fail(entry_id=entry.pk, worker=WORKER, failure=rate_limited)
    QueueEntry.objects.filter(pk=entry.pk).update(next_attempt_at=timezone.now())
    run(entry)
    gone = Failure("Fathom has no such recording.", transient=False, kind="fathom_rejected")
    transfers.transfer_retry_or_fail(entry_id=entry.pk, worker=WORKER, failure=gone)
    assert selectors.queue_stats_since(since=since)["failed"] == 1

    # Retried by its owner, and this time it works.
    line.entry_retry(entry_id=entry.pk)
    run(entry)
    transfers.transfer_complete(entry_id=entry.pk, worker=WORKER, bytes_moved=1234)

    stats = selectors.queue_stats_since(since=since)
    assert (stats["failed"], stats["completed"]) == (1, 1)
    assert [a.entry_id for a in selectors.recent_failures(since=since)] == [entry.pk]

    body = client_for(alice).get(f"/api/queue/{entry.pk}").json()
    assert body["status"] == "completed" and body["mine"] is True
    attempts = body["attempt_history"]
    assert body["attempts"] == 1  # the count since the manual retry
    assert [(a["number"], a["outcome"], a["error_kind"]) for a in attempts] == [
        (1, "retrying", "x429"),
        (2, "failed", "fathom_rejected"),
        (1, "completed", ""),
    ]
    assert attempts[0]["retry_after_seconds"] == 0
    assert attempts[1]["error"] == "Fathom has no such recording."
    assert attempts[2]["bytes_moved"] == 1234
    assert all(a["worker"] == WORKER and a["finished_at"] for a in attempts)
    # Staff see the same history.
    assert client_for(staff).get(f"/api/queue/{entry.pk}").json()["attempt_history"] == attempts


def test_someone_elses_entry_is_not_found(client_for, alice, bob, make_meeting):
    entry = line.entry_enqueue(meeting=make_meeting(alice))
    assert_error(client_for(bob).get(f"/api/queue/{entry.pk}"), 404, "not_found")
    assert_error(client_for(bob).get("/api/queue/not-a-uuid"), 404, "not_found")


def test_a_cancelled_run_and_a_lost_worker_end_their_attempts(client_for, alice, make_meeting):
    cancelled = line.entry_enqueue(meeting=make_meeting(alice))
    lost = line.entry_enqueue(meeting=make_meeting(alice))
    run(cancelled)
    line.entry_cancel(entry_id=cancelled.pk)
    run(lost)
    QueueEntry.objects.filter(pk=lost.pk).update(lease_expires_at=timezone.now())
    transfers.transfers_requeue_expired()

    client = client_for(alice)
    [attempt] = client.get(f"/api/queue/{cancelled.pk}").json()["attempt_history"]
    assert attempt["outcome"] == "cancelled" and attempt["finished_at"]
    [attempt] = client.get(f"/api/queue/{lost.pk}").json()["attempt_history"]
    assert (attempt["outcome"], attempt["error_kind"]) == ("requeued", "worker_lost")
    assert attempt["error"] == "The worker stopped responding."


def test_the_admin_entry_page_lists_the_attempts(client, staff, alice, make_meeting):
    entry = line.entry_enqueue(meeting=make_meeting(alice))
    run(entry)
    gone = Failure("Fathom refused the download (403).", transient=False, kind="fathom_rejected")
    transfers.transfer_retry_or_fail(entry_id=entry.pk, worker=WORKER, failure=gone)
    client.force_login(staff)
    page = client.get(f"/admin/queue_app/queueentry/{entry.pk}/change/").content.decode()
    assert "Transfer attempts" in page
    assert "fathom_rejected" in page and "Fathom refused the download (403)." in page
