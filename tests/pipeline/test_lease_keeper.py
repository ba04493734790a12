"""A transfer keeps its lease while its worker lives, even when Fathom stalls."""

from __future__ import annotations

import time

import pytest

from queue_app.models import QueueEntry
from queue_app.services import line, transfers
from queue_app.transfer import LeaseKeeper, Progress, TransferCancelled

pytestmark = pytest.mark.django_db(transaction=True)  # the keeper's thread has its own connection

WORKER = "celery@test:4242"


@pytest.fixture
def running(settings, alice, make_meeting) -> QueueEntry:
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    settings.QUEUE_LEASE_SECONDS = 1
    settings.QUEUE_HEARTBEAT_SECONDS = 0.1
    line.entry_enqueue(meeting=make_meeting(alice))
    entry = transfers.transfer_claim_next(worker="")
    assert transfers.transfer_begin(entry_id=entry.id, worker=WORKER)
    return entry


def test_the_lease_is_renewed_while_the_transfer_waits(running):
    with LeaseKeeper(entry_id=running.id, worker=WORKER) as lease:
        time.sleep(1.5)  # longer than the lease, with no progress at all
        assert len(transfers.transfers_requeue_expired()) == 0
        assert not lease.lost
    assert QueueEntry.objects.get(pk=running.pk).status == "running"


def test_without_the_keeper_the_same_wait_loses_the_lease(running):
    time.sleep(1.5)
    assert len(transfers.transfers_requeue_expired()) == 1
    assert QueueEntry.objects.get(pk=running.pk).status == "queued"


def test_a_cancelled_entry_stops_the_transfer_at_its_next_report(running):
    with LeaseKeeper(entry_id=running.id, worker=WORKER) as lease:
        line.entry_cancel(entry_id=running.id)
        deadline = time.monotonic() + 5
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.lost
        progress = Progress(
            entry_id=running.id, owner_id=running.owner_id, worker=WORKER, lease=lease
        )
        with pytest.raises(TransferCancelled):
            progress.report("downloading", 0.5)
