"""The queued's order: moves, the sparse ordering key and its renumbering, leases and retries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from queue_app import errors
from queue_app.models import EntryStatus, QueueEntry, QueueEvent
from queue_app.services import line, transfers
from tests.queue_helpers import fail_transfer, wait_to_retry
from tests.unit.queue_checks import assert_invariants, line_ids

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_celery(settings) -> None:
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    settings.QUEUE_CONCURRENCY = 2


@pytest.fixture
def queued(alice, bob, make_meeting):
    """Five queued entries, alternating owners; returned front first."""
    return [line.entry_enqueue(meeting=make_meeting(owner)) for owner in [alice, bob] * 2 + [alice]]


@pytest.fixture(autouse=True)
def statements_in_the_clear(settings) -> None:
    settings.QUEUE_PREPARED_STATEMENTS = False  # to read them (queue_app.sql)


def entry_updates(queries: CaptureQueriesContext) -> list[str]:
    """The UPDATEs of entries, one each (on PostgreSQL a round trip may carry several
    statements, joined by "; ": queue_app.sql.batched)."""
    return [
        statement
        for q in queries.captured_queries
        for statement in q["sql"].split("; ")
        if statement.startswith('UPDATE "queue_app_queueentry"')
    ]


def test_move_puts_the_entry_at_the_position_and_keeps_the_others_in_order(queued) -> None:
    ids = [str(entry.pk) for entry in queued]
    line.entry_move(entry_id=queued[4].pk, position=2)
    assert line_ids() == [ids[0], ids[4], ids[1], ids[2], ids[3]]
    line.entry_move(entry_id=queued[0].pk, position="bottom")
    assert line_ids() == [ids[4], ids[1], ids[2], ids[3], ids[0]]
    line.entry_move(entry_id=queued[3].pk, position="top")
    assert line_ids() == [ids[3], ids[4], ids[1], ids[2], ids[0]]
    line.entry_move(entry_id=queued[3].pk, position=4)
    assert line_ids() == [ids[4], ids[1], ids[2], ids[3], ids[0]]
    assert_invariants()


def test_a_move_is_one_row_update(queued) -> None:
    with CaptureQueriesContext(connection) as queries:
        line.entry_move(entry_id=queued[4].pk, position=2)
    assert len(entry_updates(queries)) == 1


@pytest.mark.parametrize("position", [0, -1, 6, 99, "2", "middle", None, 2.0, True])
def test_a_bad_position_is_refused_and_changes_nothing(queued, position) -> None:
    before = line_ids()
    with pytest.raises(errors.InvalidPosition):
        line.entry_move(entry_id=queued[0].pk, position=position)
    assert line_ids() == before
    assert QueueEvent.objects.count() == len(queued)


def test_only_queued_entries_move(queued) -> None:
    claimed = transfers.transfer_claim_next(worker="w")
    with pytest.raises(errors.InvalidState):
        line.entry_move(entry_id=claimed.pk, position=1)
    with pytest.raises(errors.EntryNotFound):
        line.entry_move(entry_id="not-a-uuid", position=1)


def test_moving_into_the_same_gap_again_and_again_renumbers_and_keeps_the_order(
    alice, make_meeting, settings
) -> None:
    # First come, first served: one user's entries are neighbours one gap apart (with fair
    # share each is a round of its own, a gap of 2**44).
    settings.QUEUE_ORDERING = "fifo"
    entries = [line.entry_enqueue(meeting=make_meeting(alice)) for _ in range(30)]
    expected = [str(entry.pk) for entry in entries]
    updates_per_move = []
    # Each move takes the back entry to second place, halving the gap after the first.
    for _ in range(25):
        back = expected.pop()
        expected.insert(1, back)
        with CaptureQueriesContext(connection) as queries:
            line.entry_move(entry_id=back, position=2)
        updates_per_move.append(len(entry_updates(queries)))
        assert line_ids() == expected
        assert_invariants()
    # The gap of 2**16 halves 16 times before it is used up: then one move renumbers the
    # whole line (one batched update of every entry) and the moves after it are single
    # updates again.
    renumbering = [i for i, count in enumerate(updates_per_move) if count > 1]
    assert len(renumbering) == 1, updates_per_move
    assert updates_per_move[renumbering[0]] == 2
    assert updates_per_move.count(1) == len(updates_per_move) - 1
    assert QueueEvent.objects.filter(update_type="position_updated").count() == 25


def expire(entry: QueueEntry) -> None:
    """Setup: the entry's worker stopped heartbeating a while ago."""
    QueueEntry.objects.filter(pk=entry.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_an_expired_lease_goes_back_to_the_front_and_is_claimed_again(queued) -> None:
    first = transfers.transfer_claim_next(worker="")
    second = transfers.transfer_claim_next(worker="")
    assert transfers.transfer_begin(entry_id=first.pk, worker="w1")
    assert transfers.transfer_begin(entry_id=second.pk, worker="w2")
    assert len(transfers.transfers_requeue_expired()) == 0, "leases still good"
    expire(first)
    expire(second)

    assert len(transfers.transfers_requeue_expired()) == 2
    # Both go before the queued, in the order they were claimed in.
    assert line_ids()[:3] == [str(first.pk), str(second.pk), str(queued[2].pk)]
    first.refresh_from_db()
    assert (first.status, first.worker, first.attempts) == (EntryStatus.QUEUED, "", 1)
    assert first.last_error == "The worker stopped responding."
    # The old worker is told to stop and cannot finish what is no longer its own.
    assert not transfers.transfer_heartbeat(entry_id=first.pk, worker="w1")
    assert not transfers.transfer_complete(entry_id=first.pk, worker="w1")
    assert transfers.transfer_claim_next(worker="").pk == first.pk
    assert transfers.transfer_claim_next(worker="").pk == second.pk
    first.refresh_from_db()
    assert first.attempts == 2
    assert_invariants()


def test_an_expired_lease_out_of_attempts_fails(queued) -> None:
    QueueEntry.objects.filter(pk=queued[0].pk).update(max_attempts=2)
    for attempt in (1, 2):
        entry = transfers.transfer_claim_next(worker="")
        assert (entry.pk, entry.attempts) == (queued[0].pk, attempt)
        expire(entry)
        assert len(transfers.transfers_requeue_expired()) == 1
    entry.refresh_from_db()
    assert entry.status == EntryStatus.FAILED
    assert "gave up after 2 attempts" in entry.last_error
    assert QueueEvent.objects.order_by("-seq").first().update_type == "task_failed"
    assert transfers.transfer_claim_next(worker="").pk == queued[1].pk


def test_a_scheduled_retry_waits_then_goes_before_the_line(queued) -> None:
    entry = transfers.transfer_claim_next(worker="w")
    assert wait_to_retry(entry_id=entry.pk, worker="w", error="503", delay_seconds=60)
    entry.refresh_from_db()
    assert entry.status == EntryStatus.RETRYING
    assert (entry.worker, entry.last_error) == ("", "503")
    assert entry.next_attempt_at > timezone.now() + timedelta(seconds=50)
    # Still waiting: the queued goes on without it.
    assert transfers.transfer_claim_next(worker="w").pk == queued[1].pk
    transfers.transfer_complete(entry_id=queued[1].pk, worker="w")
    QueueEntry.objects.filter(pk=entry.pk).update(next_attempt_at=timezone.now())
    again = transfers.transfer_claim_next(worker="w")
    assert (again.pk, again.attempts) == (entry.pk, 2)


def test_a_transient_failure_fails_the_entry_after_max_attempts(queued) -> None:
    QueueEntry.objects.filter(pk=queued[0].pk).update(max_attempts=3)
    for attempt in (1, 2, 3):
        entry = transfers.transfer_claim_next(worker="w")
        assert (entry.pk, entry.attempts) == (queued[0].pk, attempt)
        wait_to_retry(entry_id=entry.pk, worker="w", error="timeout", delay_seconds=0)
    entry.refresh_from_db()
    assert entry.status == EntryStatus.FAILED
    assert entry.last_error == "timeout (gave up after 3 attempts)"
    # A manual retry starts over: attempts reset, back of the queued.
    line.entry_retry(entry_id=entry.pk)
    entry.refresh_from_db()
    assert (entry.status, entry.attempts, entry.last_error) == (EntryStatus.QUEUED, 0, "")
    assert line_ids()[-1] == str(entry.pk)


def test_retry_or_fail_by_another_worker_is_refused(queued) -> None:
    entry = transfers.transfer_claim_next(worker="w")
    events = QueueEvent.objects.count()
    assert not wait_to_retry(entry_id=entry.pk, worker="x", error="e", delay_seconds=0)
    assert not fail_transfer(entry_id=entry.pk, worker="x", error="e")
    assert QueueEvent.objects.count() == events
    entry.refresh_from_db()
    assert entry.status == EntryStatus.RUNNING


def test_an_expired_claim_that_no_worker_began_says_its_task_was_lost(queued) -> None:
    """Claimed by the dispatcher, but the task message never reached a worker (a broker
    restart): not "the worker stopped responding", which would send operators looking for
    a dead worker."""
    entry = transfers.transfer_claim_next(worker="")
    expire(entry)
    [decision] = transfers.transfers_requeue_expired()
    entry.refresh_from_db()
    assert entry.status == EntryStatus.QUEUED
    assert entry.last_error == transfers.TASK_LOST == decision.error
