"""What the monitor reads besides the live queue: its charts (GET /monitor/stats) from
the attempt history, and the failed entries by owner and error kind, in pages
(GET /monitor/entries). Staff only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from queue_app import stats
from queue_app.models import QueueEntry, TransferAttempt
from queue_app.retry_policy import Failure
from queue_app.services import line, transfers

pytestmark = pytest.mark.django_db


def fail(entry, kind: str, *, transient: bool = False) -> None:
    transfers.transfer_claim_next(worker="w")
    failure = Failure(f"{kind} happened", transient=transient, kind=kind)
    transfers.transfer_retry_or_fail(entry_id=entry.pk, worker="w", failure=failure)


def test_activity_counts_each_interval_from_the_attempt_history(alice, make_meeting):
    now = timezone.now()
    done, failed, retried = (line.entry_enqueue(meeting=make_meeting(alice)) for _ in range(3))
    transfers.transfer_claim_next(worker="w")
    transfers.transfer_complete(entry_id=done.pk, worker="w", bytes_moved=1)
    fail(failed, "fathom_rejected")
    fail(retried, "fathom_unavailable", transient=True)
    line.entry_retry(entry_id=failed.pk)  # a retry keeps the failure in the history
    # The completion happened 10 minutes ago, after 30 s in line.
    ago = now - timedelta(minutes=10)
    TransferAttempt.objects.filter(entry=done).update(started_at=ago, finished_at=ago)
    QueueEntry.objects.filter(pk=done.pk).update(created_at=ago - timedelta(seconds=30))

    hour = stats.activity(window="hour", now=now)
    assert len(hour["times"]) == 60 and hour["step_seconds"] == 60
    assert hour["times"][-1] <= now.timestamp() < hour["times"][-1] + 60
    assert sum(hour["completed"]) == 1 and sum(hour["failed"]) == 1
    assert sum(hour["retrying"]) == 1
    ten_ago = hour["times"].index(int(ago.timestamp() // 60 * 60))
    assert hour["completed"][ten_ago] == 1
    assert hour["wait_seconds"][ten_ago] == 30.0
    assert hour["failed"][-1] == 1  # just now
    day = stats.activity(window="day", now=now)
    assert len(day["times"]) == 96 and sum(day["completed"]) == 1
    # Nothing from before the window.
    TransferAttempt.objects.filter(entry=done).update(finished_at=now - timedelta(hours=2))
    assert sum(stats.activity(window="hour", now=now)["completed"]) == 0
    assert stats.error_kinds() == ["fathom_rejected", "fathom_unavailable"]


def test_monitor_stats_by_window(staff, alice):
    operator = Client()
    operator.force_login(staff)
    day = operator.get("/monitor/stats", {"window": "day"}).json()
    assert day["chart"]["window"] == "day" and len(day["chart"]["times"]) == 96
    assert operator.get("/monitor/stats").json()["chart"]["window"] == "hour"
    bad = operator.get("/monitor/stats", {"window": "week"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid"
    user = Client()
    user.force_login(alice)
    assert user.get("/monitor/stats").status_code == 403
    assert user.get("/monitor/entries").status_code == 403


def test_failed_entries_by_owner_and_error_kind_in_pages(staff, alice, bob, make_meeting):
    rejected = [line.entry_enqueue(meeting=make_meeting(alice)) for _ in range(3)]
    for entry in rejected:
        fail(entry, "fathom_rejected")
    theirs = line.entry_enqueue(meeting=make_meeting(bob))
    fail(theirs, "upload_failed")
    operator = Client()
    operator.force_login(staff)

    everything = operator.get("/monitor/entries").json()
    assert everything["total"] == 4
    newest_first = [str(theirs.id)] + [str(e.id) for e in reversed(rejected)]
    assert [e["id"] for e in everything["entries"]] == newest_first
    assert everything["entries"][0]["error_kind"] == "upload_failed"
    assert everything["entries"][0]["owner"] == "bob"

    kind = operator.get("/monitor/entries", {"error_kind": "fathom_rejected", "limit": 2}).json()
    assert kind["total"] == 3 and len(kind["entries"]) == 2
    rest = operator.get(
        "/monitor/entries", {"error_kind": "fathom_rejected", "limit": 2, "offset": 2}
    ).json()
    assert [e["id"] for e in rest["entries"]] == [str(rejected[0].id)]
    assert operator.get("/monitor/entries", {"owner": "bob"}).json()["total"] == 1
    for bad in ({"limit": 0}, {"limit": "x"}, {"offset": "-1"}, {"limit": 501}):
        response = operator.get("/monitor/entries", bad)
        assert response.status_code == 400 and response.json()["code"] == "invalid"
