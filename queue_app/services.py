"""Every change to the queue. Nothing else writes QueueEntry, QueueState or QueueEvent.

Each function that changes what clients see is one transaction that
1. locks the QueueState row (so writers are serialised and `seq` follows commit order),
2. changes entry rows,
3. appends exactly one QueueEvent per change, numbered from QueueState.last_seq,
4. publishes the event with transaction.on_commit, so nobody hears of a state the
   database does not hold.
Views, admin actions and tasks call these functions; they never save entries directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Literal
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from queue_app import selectors
from queue_app.models import (
    ACTIVE_STATUSES,
    EntryStatus,
    Meeting,
    QueueEntry,
    QueueEvent,
    QueueState,
    UpdateType,
)
from realtime.events import entry_payload, publish

logger = logging.getLogger(__name__)

# Room between neighbouring order keys. Each move into a gap takes its midpoint, halving
# it, so 16 moves into the same gap fit before the line is renumbered (tests/unit/test_ordering).
KEY_GAP = 1 << 16
# Errors are stored and shown to their owner; cap them so a huge response body cannot.
MAX_ERROR_LENGTH = 2000


class QueueError(Exception):
    """A request the queue cannot carry out. `code` is stable and reaches API clients."""

    code = "queue_error"


class AlreadyQueued(QueueError):
    code = "already_queued"


class InvalidState(QueueError):
    code = "invalid_state"


class InvalidPosition(QueueError):
    code = "invalid_position"


class EntryNotFound(QueueError):
    code = "not_found"


Position = int | Literal["top", "bottom"]


# --- internals ---------------------------------------------------------------------------


def _lock_queue() -> QueueState:
    """Take the queue lock: the singleton state row, FOR UPDATE."""
    state = QueueState.objects.select_for_update().filter(pk=1).first()
    if state is None:
        QueueState.objects.get_or_create(pk=1)
        state = QueueState.objects.select_for_update().get(pk=1)
    return state


def _locked_entry(entry_id: UUID | str) -> QueueEntry:
    try:
        return (
            QueueEntry.objects.select_for_update(of=("self",))
            .select_related("meeting", "owner")
            .get(pk=entry_id)
        )
    # A malformed id ("abc") makes the UUID field raise ValidationError, not ValueError;
    # it names no entry either, so callers get the same EntryNotFound instead of a 500.
    except (QueueEntry.DoesNotExist, ValueError, ValidationError) as exc:
        raise EntryNotFound("No such queue entry.") from exc


def _record(
    state: QueueState,
    update_type: str,
    *,
    entries: Iterable[QueueEntry],
    global_position: int | None = None,
    same_length: bool = False,
) -> QueueEvent:
    """Append the one event for this change and publish it after commit.

    `same_length`: the change keeps every entry active (a claim, a move), so the queue's
    length is the previous event's; counting the active entries is the costliest
    statement under the lock on a long queue (~2 ms at 10,000, ~8 ms at 100,000).
    """
    entries = list(entries)
    queue_length = None
    if same_length:
        queue_length = (
            QueueEvent.objects.filter(seq=state.last_seq)
            .values_list("queue_length", flat=True)
            .first()
        )
    if queue_length is None:  # no previous event (or pruned): count
        queue_length = selectors.active_entry_count()
    state.last_seq += 1
    state.save(update_fields=["last_seq", "updated_at"])
    owners = {entry.owner_id for entry in entries}
    event = QueueEvent.objects.create(
        seq=state.last_seq,
        update_type=update_type,
        entry=entries[0] if len(entries) == 1 else None,
        affected_user_id=owners.pop() if len(owners) == 1 else None,
        global_position=global_position,
        queue_length=queue_length,
        paused=state.paused,
        payload=[entry_payload(entry, selectors.entry_position(entry)) for entry in entries],
    )
    transaction.on_commit(lambda: publish(event))
    return event


def _request_dispatch() -> None:
    """After commit, ask the dispatcher to hand out work: something became claimable."""
    if not settings.QUEUE_DISPATCH_ON_COMMIT:
        return

    def send() -> None:
        from queue_app.tasks import dispatch

        try:
            dispatch.delay()
        except Exception:  # the beat tick dispatches anyway; a broker hiccup must not 500
            logger.warning("could not request a dispatch; the next beat tick will do it")

    transaction.on_commit(send)


def _back_key() -> int:
    last = QueueEntry.objects.filter(status=EntryStatus.QUEUED).aggregate(k=Max("order_key"))["k"]
    return (last or 0) + KEY_GAP


def _front_key() -> int:
    first = QueueEntry.objects.filter(status=EntryStatus.QUEUED).aggregate(k=Min("order_key"))["k"]
    return (first or 0) - KEY_GAP


def _renumber_queued() -> None:
    """Spread the line's keys out again; rare, when two neighbours have no room between."""
    for index, entry_id in enumerate(
        selectors.queued_entries().values_list("id", flat=True), start=1
    ):
        QueueEntry.objects.filter(pk=entry_id).update(order_key=index * KEY_GAP)


def _key_for_position(entry: QueueEntry, position: int) -> int | None:
    """A key that puts `entry` at `position` among the others, or None if there is no room."""
    others = selectors.queued_entries().exclude(pk=entry.pk).values_list("order_key", flat=True)
    # The keys just before and after the target place, among the other queued entries.
    neighbours = [None, *others[:1]] if position == 1 else list(others[position - 2 : position])
    before = neighbours[0]
    after = neighbours[1] if len(neighbours) > 1 else None
    if before is None:
        return after - KEY_GAP if after is not None else KEY_GAP
    if after is None:
        return before + KEY_GAP
    if after - before < 2:
        return None
    return (before + after) // 2


def _truncate(error: str) -> str:
    return error[:MAX_ERROR_LENGTH]


# --- the queue's verbs ---------------------------------------------------------------------


def enqueue(*, meeting: Meeting, max_attempts: int | None = None) -> QueueEntry:
    """Put a meeting at the back of the line. Raises AlreadyQueued if it is in it."""
    try:
        with transaction.atomic():
            state = _lock_queue()
            if QueueEntry.objects.filter(meeting=meeting, status__in=ACTIVE_STATUSES).exists():
                raise AlreadyQueued("This meeting is already in the queue.")
            entry = QueueEntry.objects.create(
                meeting=meeting,
                owner_id=meeting.owner_id,
                order_key=_back_key(),
                max_attempts=max_attempts or settings.QUEUE_MAX_ATTEMPTS,
            )
            entry = QueueEntry.objects.select_related("meeting", "owner").get(pk=entry.pk)
            _record(
                state,
                UpdateType.MEETING_ADDED,
                entries=[entry],
                global_position=selectors.entry_position(entry),
            )
            _request_dispatch()
    except IntegrityError as exc:  # the partial unique index, if a check above raced
        raise AlreadyQueued("This meeting is already in the queue.") from exc
    return entry


def cancel(*, entry_id: UUID | str) -> QueueEntry:
    """Take an entry out of the line (or stop it: its worker sees it at the next heartbeat)."""
    with transaction.atomic():
        state = _lock_queue()
        entry = _locked_entry(entry_id)
        if not entry.is_active:
            raise InvalidState(
                f"Only a queued or running entry can be cancelled; this one is {entry.status}."
            )
        former_position = selectors.entry_position(entry)
        entry.status = EntryStatus.CANCELLED
        entry.finished_at = timezone.now()
        entry.lease_expires_at = None
        entry.next_attempt_at = None
        entry.save()
        _record(state, UpdateType.MEETING_REMOVED, entries=[entry], global_position=former_position)
        _request_dispatch()
    return entry


def move(*, entry_id: UUID | str, position: Position) -> QueueEntry:
    """Move a queued entry to `position` (1 is the front), "top" or "bottom"."""
    with transaction.atomic():
        state = _lock_queue()
        entry = _locked_entry(entry_id)
        if entry.status != EntryStatus.QUEUED:
            raise InvalidState(f"Only a queued entry can be moved; this one is {entry.status}.")
        length = selectors.queued_entries().count()
        if position == "top":
            position = 1
        elif position == "bottom":
            position = length
        if isinstance(position, bool) or not isinstance(position, int):
            raise InvalidPosition("Position must be a whole number, 'top' or 'bottom'.")
        if not 1 <= position <= length:
            raise InvalidPosition(f"Position must be between 1 and {length}.")
        if position != selectors.entry_position(entry):
            key = _key_for_position(entry, position)
            if key is None:
                _renumber_queued()
                key = _key_for_position(entry, position)
            entry.order_key = key
            entry.save(update_fields=["order_key", "updated_at"])
        _record(
            state,
            UpdateType.POSITION_UPDATED,
            entries=[entry],
            global_position=position,
            same_length=True,
        )
    return entry


def retry(*, entry_id: UUID | str) -> QueueEntry:
    """Put a failed or cancelled entry back at the end of the line, attempts reset."""
    try:
        with transaction.atomic():
            state = _lock_queue()
            entry = _locked_entry(entry_id)
            if entry.status not in (EntryStatus.FAILED, EntryStatus.CANCELLED):
                raise InvalidState(
                    f"Only a failed or cancelled entry can be retried; this one is {entry.status}."
                )
            if QueueEntry.objects.filter(
                meeting_id=entry.meeting_id, status__in=ACTIVE_STATUSES
            ).exists():
                raise AlreadyQueued("This meeting is already in the queue.")
            entry.status = EntryStatus.QUEUED
            entry.order_key = _back_key()
            entry.attempts = 0
            entry.last_error = ""
            entry.stage = ""
            entry.progress = 0.0
            entry.worker = ""
            entry.started_at = entry.finished_at = entry.next_attempt_at = None
            entry.lease_expires_at = None
            entry.save()
            _record(
                state,
                UpdateType.TASK_RETRIED,
                entries=[entry],
                global_position=selectors.entry_position(entry),
            )
            _request_dispatch()
    except IntegrityError as exc:
        raise AlreadyQueued("This meeting is already in the queue.") from exc
    return entry


def clear() -> int:
    """Cancel every entry waiting in the line (running transfers go on). Returns how many."""
    with transaction.atomic():
        state = _lock_queue()
        waiting = list(
            QueueEntry.objects.select_for_update(of=("self",))
            .select_related("meeting", "owner")
            .filter(status__in=[EntryStatus.QUEUED, EntryStatus.RETRYING])
            .order_by("order_key")
        )
        if not waiting:
            return 0
        now = timezone.now()
        QueueEntry.objects.filter(pk__in=[entry.pk for entry in waiting]).update(
            status=EntryStatus.CANCELLED, finished_at=now, next_attempt_at=None, updated_at=now
        )
        for entry in waiting:
            entry.status, entry.finished_at, entry.next_attempt_at = (
                EntryStatus.CANCELLED,
                now,
                None,
            )
        _record(state, UpdateType.QUEUE_CLEARED, entries=waiting)
    return len(waiting)


def _set_paused(paused: bool) -> bool:
    with transaction.atomic():
        state = _lock_queue()
        if state.paused == paused:
            return False
        state.paused = paused
        state.save(update_fields=["paused", "updated_at"])
        _record(state, UpdateType.QUEUE_PAUSED if paused else UpdateType.QUEUE_RESUMED, entries=[])
        if not paused:
            _request_dispatch()
    return True


def pause() -> bool:
    """Stop handing out work; running transfers finish. False if already paused."""
    return _set_paused(True)


def resume() -> bool:
    """Start handing out work again. False if not paused."""
    return _set_paused(False)


CLAIM_FIELDS = [
    "status",
    "attempts",
    "worker",
    "started_at",
    "updated_at",
    "lease_expires_at",
    "next_attempt_at",
    "stage",
    "progress",
]


def claim_next(*, worker: str = "") -> QueueEntry | None:
    """Take the head of the line for a transfer, if the queue runs and a slot is free.

    A retrying entry whose wait is over goes before the line: it was at its head once.
    """
    with transaction.atomic():
        state = _lock_queue()
        if state.paused:
            return None
        running = QueueEntry.objects.filter(status=EntryStatus.RUNNING).count()
        if running >= settings.QUEUE_CONCURRENCY:
            return None
        now = timezone.now()
        candidates = QueueEntry.objects.select_for_update(
            skip_locked=True, of=("self",)
        ).select_related("meeting", "owner")
        entry = (
            candidates.filter(status=EntryStatus.RETRYING, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "order_key")
            .first()
        ) or candidates.filter(status=EntryStatus.QUEUED).order_by(
            "order_key", "created_at"
        ).first()
        if entry is None:
            return None
        # The head of the line is position 1 by definition (claims hold the queue lock, so
        # nothing moves meanwhile); a retrying entry has no position. Saves a count query
        # while the lock is held, which is what other claimers wait for.
        former_position = 1 if entry.status == EntryStatus.QUEUED else None
        entry.status = EntryStatus.RUNNING
        entry.attempts += 1
        entry.worker = worker
        entry.started_at = now
        entry.lease_expires_at = now + timedelta(seconds=settings.QUEUE_LEASE_SECONDS)
        entry.next_attempt_at = None
        entry.stage, entry.progress = "", 0.0
        entry.save(update_fields=CLAIM_FIELDS)
        _record(
            state,
            UpdateType.TASK_STARTED,
            entries=[entry],
            global_position=former_position,
            same_length=True,
        )
    return entry


def begin(*, entry_id: UUID | str, worker: str) -> bool:
    """A worker takes a claimed entry for itself; False if another did or it is not running.

    A conditional single-row update with no event (nothing a client sees changes), so it
    needs no queue lock. Celery may deliver a message twice; only one run gets True.
    """
    now = timezone.now()
    return bool(
        QueueEntry.objects.filter(pk=entry_id, status=EntryStatus.RUNNING, worker="").update(
            worker=worker,
            lease_expires_at=now + timedelta(seconds=settings.QUEUE_LEASE_SECONDS),
            updated_at=now,
        )
    )


def heartbeat(
    *, entry_id: UUID | str, worker: str, stage: str | None = None, progress: float | None = None
) -> bool:
    """Extend a running entry's lease. False means stop: it was cancelled or taken back.

    Like begin(), a conditional single-row update with no event, so no queue lock.
    """
    now = timezone.now()
    changes: dict[str, object] = {
        "lease_expires_at": now + timedelta(seconds=settings.QUEUE_LEASE_SECONDS),
        "updated_at": now,
    }
    if stage is not None:
        changes["stage"] = stage
    if progress is not None:
        changes["progress"] = min(max(float(progress), 0.0), 1.0)
    return bool(
        QueueEntry.objects.filter(pk=entry_id, status=EntryStatus.RUNNING, worker=worker).update(
            **changes
        )
    )


def _running_entry_of(entry_id: UUID | str, worker: str) -> QueueEntry | None:
    entry = _locked_entry(entry_id)
    if entry.status != EntryStatus.RUNNING or entry.worker != worker:
        return None
    return entry


def complete(*, entry_id: UUID | str, worker: str, result_url: str = "") -> bool:
    """Record a finished transfer. False if the entry is no longer this worker's."""
    with transaction.atomic():
        state = _lock_queue()
        entry = _running_entry_of(entry_id, worker)
        if entry is None:
            return False
        entry.status = EntryStatus.COMPLETED
        entry.result_url = result_url
        entry.finished_at = timezone.now()
        entry.lease_expires_at = None
        entry.stage, entry.progress = "done", 1.0
        entry.save()
        _record(state, UpdateType.TASK_COMPLETED, entries=[entry])
        _request_dispatch()
    return True


def fail(*, entry_id: UUID | str, worker: str, error: str) -> bool:
    """Record a transfer that will not succeed. False if the entry is no longer this worker's."""
    with transaction.atomic():
        state = _lock_queue()
        entry = _running_entry_of(entry_id, worker)
        if entry is None:
            return False
        _mark_failed(entry, error)
        _record(state, UpdateType.TASK_FAILED, entries=[entry])
        _request_dispatch()
    return True


def _mark_failed(entry: QueueEntry, error: str) -> None:
    entry.status = EntryStatus.FAILED
    entry.last_error = _truncate(error)
    entry.finished_at = timezone.now()
    entry.lease_expires_at = None
    entry.next_attempt_at = None
    entry.save()


def schedule_retry(*, entry_id: UUID | str, worker: str, error: str, delay_seconds: float) -> bool:
    """A transient failure: wait `delay_seconds`, then go again, or fail if out of attempts."""
    with transaction.atomic():
        state = _lock_queue()
        entry = _running_entry_of(entry_id, worker)
        if entry is None:
            return False
        if entry.attempts >= entry.max_attempts:
            _mark_failed(entry, f"{error} (gave up after {entry.attempts} attempts)")
            _record(state, UpdateType.TASK_FAILED, entries=[entry])
        else:
            entry.status = EntryStatus.RETRYING
            entry.last_error = _truncate(error)
            entry.next_attempt_at = timezone.now() + timedelta(seconds=max(delay_seconds, 0))
            entry.lease_expires_at = None
            entry.worker = ""
            entry.save()
            _record(state, UpdateType.TASK_RETRIED, entries=[entry])
        _request_dispatch()
    return True


def requeue_expired() -> int:
    """Put running entries whose lease ran out (their worker died) back at the front."""
    with transaction.atomic():
        state = _lock_queue()
        now = timezone.now()
        expired = list(
            QueueEntry.objects.select_for_update(of=("self",))
            .select_related("meeting", "owner")
            .filter(status=EntryStatus.RUNNING, lease_expires_at__lt=now)
            .order_by("-started_at")
        )
        for entry in expired:
            error = "The worker stopped responding."
            if entry.attempts >= entry.max_attempts:
                _mark_failed(entry, f"{error} (gave up after {entry.attempts} attempts)")
                _record(state, UpdateType.TASK_FAILED, entries=[entry])
                continue
            entry.status = EntryStatus.QUEUED
            entry.order_key = _front_key()
            entry.last_error = error
            entry.worker = ""
            entry.lease_expires_at = None
            entry.stage, entry.progress = "", 0.0
            entry.save()
            _record(
                state,
                UpdateType.TASK_RETRIED,
                entries=[entry],
                global_position=selectors.entry_position(entry),
            )
        if expired:
            _request_dispatch()
    return len(expired)


def prune_events(*, older_than: timedelta | None = None) -> int:
    """Delete events past the retention window. Resuming from before it gets a snapshot."""
    if older_than is None:
        older_than = timedelta(hours=settings.QUEUE_EVENT_RETENTION_HOURS)
    cutoff = timezone.now() - older_than
    # Always keep the newest event: it tells a resuming client how far the log goes.
    newest = QueueEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    deleted, _ = QueueEvent.objects.filter(Q(created_at__lt=cutoff) & ~Q(seq=newest)).delete()
    return deleted
