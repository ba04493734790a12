"""What every queue change shares. Each change that clients see is one transaction that
1. locks the QueueState row (so writers are serialised and `seq` follows commit order),
2. changes entry rows (by a transition of queue_app.transitions),
3. appends exactly one QueueEvent, numbered from QueueState.last_seq,
4. publishes the event with transaction.on_commit (queue_app.broadcast), so nobody hears
   of a state the database does not hold.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from queue_app import broadcast, events, selectors
from queue_app.errors import EntryNotFound
from queue_app.events import (
    ENTRY_COLUMNS,
    entry_payload,
    entry_row,
    position_runs,
    shifted,
    username_column,
)
from queue_app.models import EntryStatus, QueueEntry, QueueEvent, QueueState, TransferAttempt
from queue_app.retry_policy import Failure
from queue_app.services import activity, ordering

logger = logging.getLogger(__name__)

# The dispatcher task, by name: services ask for it without importing the tasks module
# (tasks import services).
DISPATCH_TASK = "queue_app.tasks.dispatch"
# The QueueState fields a change may move, saved with each event.
STATE_COUNTERS = ("waiting", "running", "retrying", "next_arrival", "top_round", "head_round")


def lock_queue() -> QueueState:
    """Take the queue lock: the singleton state row, FOR UPDATE.

    A data migration creates the row; a test database flush removes it, so the first
    change after one creates it again.
    """
    state = QueueState.objects.select_for_update().filter(pk=1).first()
    if state is None:
        _, created = QueueState.objects.get_or_create(pk=1)
        state = QueueState.objects.select_for_update().get(pk=1)
        if created:  # rows may be there already (written around the services): count them
            ordering.recount(state)
    return state


def locked_entry(entry_id: UUID | str) -> QueueEntry:
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


Before = dict[Any, tuple[str | None, int | None]]


def was(entries: Iterable[QueueEntry]) -> Before:
    """Each entry's status and position before a change (a count for a queued one)."""
    return {entry.pk: (entry.status, selectors.entry_position(entry)) for entry in entries}


def record(
    state: QueueState,
    update_type: str,
    *,
    entries: Iterable[QueueEntry],
    before: Before | None = None,
    global_position: int | None = None,
    positions: Mapping[Any, int | None] | None = None,
    note: str = "",
    actor: Any | None = None,
) -> QueueEvent:
    """Append the one event for this change, save the state's counts (which the caller
    has kept: services.ordering) and publish the event after commit.

    `before`: each entry's status and position before the change (`was`); entries not in
    it are new. `positions`: the entries' positions by id when the caller knows them;
    otherwise each queued entry's position is one index-backed count
    (selectors.entry_position). From both the event says which places moved, and which
    entries entered the head of the line (protocol version 2, events.event_for_viewer).
    `note`, `actor`: staff's word on the change and who made it, for the owners' history
    (services.activity, which stores every outcome with the change).
    """
    entries = list(entries)
    before = before or {}
    state.last_seq += 1
    state.save(update_fields=[*STATE_COUNTERS, "last_seq", "updated_at"])
    owners = {entry.owner_id for entry in entries}
    if positions is None:
        positions = {entry.pk: selectors.entry_position(entry) for entry in entries}
    now_at = {
        entry.pk: positions.get(entry.pk) if entry.status == EntryStatus.QUEUED else None
        for entry in entries
    }
    moved = {
        "removed": position_runs([p for _, p in before.values() if p is not None]),
        "inserted": position_runs([p for p in now_at.values() if p is not None]),
    }
    event = QueueEvent.objects.create(
        seq=state.last_seq,
        update_type=update_type,
        entry=entries[0] if len(entries) == 1 else None,
        affected_user_id=owners.pop() if len(owners) == 1 else None,
        global_position=global_position,
        queue_length=ordering.length(state),
        paused=state.paused,
        payload=[entry_payload(entry_row(entry), now_at[entry.pk]) for entry in entries],
        window={
            "before": [list(before.get(entry.pk, (None, None))) for entry in entries],
            "moved": moved,
            "entered": _entered(state, moved, {entry.pk for entry in entries}),
            "waiting": state.waiting,
        },
    )
    activity.record_outcomes(event=event, entries=entries, note=note, actor=actor)
    transaction.on_commit(lambda: broadcast.publish_event(event))
    return event


def _entered(state: QueueState, moved: dict[str, Any], changed: set[Any]) -> list[dict]:
    """The entries the change did not touch that moved up into the head of the line, for
    each window size (events.HEAD_PLACES, STAFF_HEAD_PLACES): at most a window's worth.
    One walk of the (status, order_key) index over the places concerned, then their rows
    by key; nothing at all when no place ahead of a window's end was freed."""
    removed = sum(run[1] for run in moved["removed"])
    inserted = sum(run[1] for run in moved["inserted"])
    waiting_before = state.waiting - inserted + removed
    ranges = []  # (first, last) places, after the change, that entered a window
    for places in (events.HEAD_PLACES, events.STAFF_HEAD_PLACES):
        if places >= waiting_before:
            continue  # nobody stood behind the window
        first = shifted(places + 1, moved)
        if first <= places:
            ranges.append((first, places))
    if not ranges:
        return []
    low, high = min(first for first, _ in ranges), max(last for _, last in ranges)
    ids = list(selectors.queued_entries().values_list("id", flat=True)[low - 1 : high])
    place = {
        pk: position
        for position, pk in enumerate(ids, start=low)
        if pk not in changed and any(first <= position <= last for first, last in ranges)
    }
    if not place:
        return []
    rows = QueueEntry.objects.filter(pk__in=list(place)).values(*ENTRY_COLUMNS, username_column())
    entered = [entry_payload(row, place[row["id"]]) for row in rows]
    return sorted(entered, key=lambda entry: entry["position"])


def request_dispatch() -> None:
    """After commit, ask the dispatcher to hand out work: something became claimable."""
    if not settings.QUEUE_DISPATCH_ON_COMMIT:
        return

    def send() -> None:
        try:
            current_app.send_task(DISPATCH_TASK)
        except Exception:  # the beat tick dispatches anyway; a broker hiccup must not 500
            logger.warning("could not request a dispatch; the next beat tick will do it")

    transaction.on_commit(send)


def close_attempts(
    entries: Iterable[QueueEntry],
    outcome: str,
    now: datetime,
    *,
    failure: Failure | None = None,
    error: str = "",
    bytes_moved: int | None = None,
) -> None:
    """End the entries' open attempts (one while an entry runs) with `outcome`."""
    TransferAttempt.objects.filter(entry__in=list(entries), finished_at__isnull=True).update(
        finished_at=now,
        outcome=outcome,
        error_kind=failure.kind if failure is not None else "",
        error=error,
        retry_after_seconds=failure.retry_after if failure is not None else None,
        bytes_moved=bytes_moved,
    )
