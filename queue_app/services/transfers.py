"""A transfer's lifecycle as workers drive it: claim the head of the line, begin it, keep
its lease, store its progress, and end it (complete, or retry-or-fail by the retry
policy); the reaper requeues transfers whose worker died. Each call returns what
happened, so callers never re-read a row to learn the outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.utils import timezone

from queue_app import events, retry_policy, sql, transitions
from queue_app.models import (
    AttemptOutcome,
    EntryStatus,
    QueueEntry,
    TransferAttempt,
)
from queue_app.retry_policy import Decision, Failure, GiveUp, Retry
from queue_app.services import ordering
from queue_app.services.changes import (
    claim_candidate,
    close_attempts,
    entry_from_json,
    lock_queue,
    lock_queue_reading_head,
    locked_entry,
    publish_told,
    queue_change,
    record,
    request_dispatch,
    run_by_the_server,
    with_people,
)

# Errors are stored and shown to their owner; cap them so a huge response body cannot.
MAX_ERROR_LENGTH = 2000
WORKER_STOPPED = "The worker stopped responding."
TASK_LOST = "The transfer never started (its task was lost); it is back in line."


def _was_running(entry: QueueEntry) -> dict:
    """`before` for a change to a running entry: off the line, no position."""
    return {entry.pk: (EntryStatus.RUNNING, None)}


def _lease_until(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.QUEUE_LEASE_SECONDS)


def transfer_claim_next(*, worker: str = "") -> QueueEntry | None:
    """Take the head of the line for a transfer, if the queue runs and a slot is free.

    A retrying entry whose wait is over goes before the line: it was at its head once.

    On PostgreSQL the server runs the whole change (queue_claim_next, migration 0009) in
    one round trip, so the queue lock is never held while this process waits for a core;
    the claim below is its definition, and runs where the function cannot.
    """
    if connection.vendor == "postgresql":
        answered, claimed = _claim_by_the_server(worker)
        if answered:
            return claimed
    # Where this runs on PostgreSQL (the function's fallback), two round trips under the
    # lock: the lock, the head and the entries that taking it brings into the windows;
    # then every write with COMMIT (sql.batched).
    with queue_change():
        state, head, entered_rows = lock_queue_reading_head()
        if state.paused or state.running >= settings.QUEUE_CONCURRENCY:
            return None
        now = timezone.now()
        entry = None
        if state.retrying:
            entry = claim_candidate(
                EntryStatus.RETRYING, ("next_attempt_at", "order_key"), due_by=now
            )
        if entry is None and state.waiting:
            # The head by the (status, order_key) index: one row read, whatever the depth.
            entry = head
        if entry is None:
            return None
        # The head of the line is position 1 by definition (claims hold the queue lock, so
        # nothing moves meanwhile); a retrying entry has no position.
        was = entry.status
        former_position = 1 if was == EntryStatus.QUEUED else None
        if was == EntryStatus.QUEUED:
            ordering.taken_from_head(state, entry)
        transitions.CLAIM.apply(
            entry,
            now,
            attempts=entry.attempts + 1,
            worker=worker,
            lease_expires_at=_lease_until(now),
        )
        ordering.moved(state, [entry], [was])
        sql.insert(
            [TransferAttempt(entry=entry, number=entry.attempts, worker=worker, started_at=now)]
        )
        record(
            state,
            transitions.CLAIM.update_type,
            entries=[entry],
            before={entry.pk: (was, former_position)},
            global_position=former_position,
            positions={},
            entered_rows=entered_rows,
        )
    return entry


_CLAIM_SQL = "SELECT queue_claim_next(%s, %s, %s, %s, %s, %s)"


def _claim_by_the_server(worker: str) -> tuple[bool, QueueEntry | None]:
    """transfer_claim_next's change as queue_claim_next() runs it: (True, the claimed
    entry or None), its event published after commit; (False, None) when the function
    leaves the claim to Python (the queue state row is not there yet)."""
    now = timezone.now()
    level = settings.QUEUE_SYNCHRONOUS_COMMIT
    result = run_by_the_server(
        _CLAIM_SQL,
        [
            worker,
            now,
            _lease_until(now),
            settings.QUEUE_CONCURRENCY,
            None if level == "on" else level,
            [events.HEAD_PLACES, events.STAFF_HEAD_PLACES],
        ],
    )
    if result["outcome"] == "fallback":
        return False, None
    if result["outcome"] != "claimed":
        return True, None
    entry = entry_from_json(result["entry"])
    publish_told(result["event"], transitions.CLAIM.update_type, entry, now)
    return True, entry


def transfer_begin(*, entry_id: UUID | str, worker: str) -> bool:
    """A worker takes a claimed entry for itself; False if another did or it is not running.

    A conditional single-row update with no event (nothing a client sees changes), so it
    needs no queue lock. Celery may deliver a message twice; only one run gets True.
    """
    now = timezone.now()
    begun = bool(
        QueueEntry.objects.filter(pk=entry_id, status=EntryStatus.RUNNING, worker="").update(
            worker=worker, lease_expires_at=_lease_until(now), updated_at=now
        )
    )
    if begun:
        TransferAttempt.objects.filter(entry_id=entry_id, finished_at__isnull=True).update(
            worker=worker
        )
    return begun


def transfer_heartbeat(*, entry_id: UUID | str, worker: str) -> bool:
    """Renew a running entry's lease. False means stop: it was cancelled or taken back.

    Like transfer_begin, a conditional single-row update with no event, so no queue lock.
    """
    return _renew_lease(entry_id, worker)


def transfer_store_progress(
    *, entry_id: UUID | str, worker: str, stage: str, progress: float
) -> bool:
    """Store a running entry's stage and progress (what snapshots show) and renew its
    lease. False means stop: it was cancelled or taken back."""
    return _renew_lease(entry_id, worker, stage=stage, progress=min(max(float(progress), 0.0), 1.0))


def _renew_lease(entry_id: UUID | str, worker: str, **fields: object) -> bool:
    now = timezone.now()
    return bool(
        QueueEntry.objects.filter(pk=entry_id, status=EntryStatus.RUNNING, worker=worker).update(
            lease_expires_at=_lease_until(now), updated_at=now, **fields
        )
    )


def _running_entry_of(entry_id: UUID | str, worker: str) -> QueueEntry | None:
    entry = locked_entry(entry_id)
    if entry.status != EntryStatus.RUNNING or entry.worker != worker:
        return None
    return entry


def transfer_complete(
    *, entry_id: UUID | str, worker: str, result_url: str = "", bytes_moved: int | None = None
) -> QueueEntry | None:
    """Record a finished transfer; None if the entry is no longer this worker's."""
    with queue_change():
        state = lock_queue()
        entry = _running_entry_of(entry_id, worker)
        if entry is None:
            return None
        now = timezone.now()
        transitions.COMPLETE.apply(entry, now, result_url=result_url)
        ordering.moved(state, [entry], [EntryStatus.RUNNING])
        close_attempts([entry], AttemptOutcome.COMPLETED, now, bytes_moved=bytes_moved)
        record(
            state,
            transitions.COMPLETE.update_type,
            entries=[entry],
            before=_was_running(entry),
            positions={},
        )
        request_dispatch()
    return entry


def transfer_retry_or_fail(
    *, entry_id: UUID | str, worker: str, failure: Failure
) -> Decision | None:
    """Apply the retry policy to a failed attempt: wait and retry, or fail for good.

    Returns the decision (Retry with its delay, or GiveUp with the error stored), or None
    if the entry is no longer this worker's (cancelled or taken back meanwhile).
    """
    with queue_change():
        state = lock_queue()
        entry = _running_entry_of(entry_id, worker)
        if entry is None:
            return None
        decision = retry_policy.decide(
            failure, attempts=entry.attempts, max_attempts=entry.max_attempts
        )
        now = timezone.now()
        error = decision.error[:MAX_ERROR_LENGTH]
        if isinstance(decision, Retry):
            step, outcome = transitions.WAIT_TO_RETRY, AttemptOutcome.RETRYING
            step.apply(
                entry,
                now,
                last_error=error,
                next_attempt_at=now + timedelta(seconds=max(decision.delay_seconds, 0)),
            )
        else:
            step, outcome = transitions.FAIL, AttemptOutcome.FAILED
            step.apply(entry, now, last_error=error)
        ordering.moved(state, [entry], [EntryStatus.RUNNING])
        close_attempts([entry], outcome, now, failure=failure, error=error)
        record(state, step.update_type, entries=[entry], before=_was_running(entry), positions={})
        request_dispatch()
    return decision


def transfers_requeue_expired() -> list[Decision]:
    """Put running entries whose lease ran out (their worker died) back at the front of
    the line, or fail them when the retry policy gives up. Returns a decision each."""
    decisions: list[Decision] = []
    stopped = Failure(WORKER_STOPPED, transient=True, kind="worker_lost")
    # Claimed, but no worker ever began it: its task message was lost (a broker restart).
    never_begun = Failure(TASK_LOST, transient=True, kind="task_lost")
    with queue_change():
        state = lock_queue()
        now = timezone.now()
        expired = list(
            with_people(QueueEntry.objects.select_for_update(of=("self",)))
            .filter(status=EntryStatus.RUNNING, lease_expires_at__lt=now)
            .order_by("-started_at")
        )
        for entry in expired:
            failure = stopped if entry.worker else never_begun
            decision = retry_policy.decide(
                failure, attempts=entry.attempts, max_attempts=entry.max_attempts
            )
            decisions.append(decision)
            if isinstance(decision, GiveUp):
                transitions.FAIL.apply(entry, now, last_error=decision.error)
                ordering.moved(state, [entry], [EntryStatus.RUNNING])
                close_attempts(
                    [entry], AttemptOutcome.FAILED, now, failure=failure, error=decision.error
                )
                record(
                    state,
                    transitions.FAIL.update_type,
                    entries=[entry],
                    before=_was_running(entry),
                    positions={},
                )
                continue
            # Straight back to the front, without the policy's wait: the worker died,
            # not the remote, and the entry was at the head of the line once.
            transitions.REQUEUE_EXPIRED.apply(
                entry, now, order_key=ordering.front_key(), last_error=decision.error
            )
            ordering.moved(state, [entry], [EntryStatus.RUNNING])
            close_attempts(
                [entry], AttemptOutcome.REQUEUED, now, failure=failure, error=decision.error
            )
            record(
                state,
                transitions.REQUEUE_EXPIRED.update_type,
                entries=[entry],
                before=_was_running(entry),
                global_position=1,
                positions={entry.pk: 1},
            )
        if expired:
            request_dispatch()
    return decisions
