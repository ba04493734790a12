"""A transfer message delivered again does nothing (issue 11, case 4).

The worker no longer cancels its running transfers when it loses the broker
(CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False): they carry on, and
their message, which could not be acknowledged on the lost connection, may be delivered
again later. That is safe because the task starts with a conditional claim
(transfers.transfer_begin): whatever state the entry is in by then - still running under
its first worker, completed, handed back, cancelled - the second delivery finds it not
claimable and skips, writing nothing. These tests prove it for each state.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from queue_app import tasks
from queue_app.models import EntryStatus, QueueEntry
from queue_app.services import line, transfers
from tests.helpers import queue_rows

pytestmark = pytest.mark.django_db

FIRST_WORKER = "celery@first:1111"


@pytest.fixture
def begun(settings, alice, make_meeting, monkeypatch) -> QueueEntry:
    """An entry whose first delivery is running on FIRST_WORKER."""
    settings.QUEUE_DISPATCH_ON_COMMIT = False

    def must_not_run(**kwargs: Any) -> str:
        raise AssertionError("a redelivered message ran the transfer")

    monkeypatch.setattr(tasks, "run_transfer", must_not_run)
    line.entry_enqueue(meeting=make_meeting(alice))
    entry = transfers.transfer_claim_next(worker="")
    assert transfers.transfer_begin(entry_id=entry.id, worker=FIRST_WORKER)
    return entry


def redeliver(entry: QueueEntry) -> None:
    """The same message again, in another worker process (this one)."""
    assert tasks.worker_name() != FIRST_WORKER
    before = queue_rows()
    tasks.transfer(str(entry.id))
    assert queue_rows() == before  # nothing written: no state, lease or event changed


def test_while_the_first_delivery_still_runs(begun):
    redeliver(begun)
    assert QueueEntry.objects.get(pk=begun.pk).worker == FIRST_WORKER


def test_after_the_first_delivery_completed(begun):
    transfers.transfer_complete(entry_id=begun.id, worker=FIRST_WORKER, result_url="https://x/")
    redeliver(begun)
    assert QueueEntry.objects.get(pk=begun.pk).status == EntryStatus.COMPLETED


def lease_runs_out(entry: QueueEntry) -> None:
    QueueEntry.objects.filter(pk=entry.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert len(transfers.transfers_requeue_expired()) == 1


def test_after_the_entry_was_handed_back_to_the_line(begun):
    lease_runs_out(begun)
    redeliver(begun)
    assert QueueEntry.objects.get(pk=begun.pk).status == EntryStatus.QUEUED


def test_after_the_entry_was_claimed_again_and_begun_by_another_worker(begun):
    lease_runs_out(begun)
    again = transfers.transfer_claim_next(worker="")
    assert again is not None and again.pk == begun.pk
    assert transfers.transfer_begin(entry_id=begun.id, worker="celery@second:2222")
    redeliver(begun)


def test_after_the_entry_was_cancelled(begun):
    line.entry_cancel(entry_id=begun.id)
    redeliver(begun)
    assert QueueEntry.objects.get(pk=begun.pk).status == EntryStatus.CANCELLED
