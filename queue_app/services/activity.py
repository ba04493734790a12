"""The history of a user's entries: one Activity row per outcome (transferred, failed,
cancelled, moved by staff, back in line, trying again), written by `changes.record` in
the transaction of the change, so every service that changes the queue leaves its mark
and nothing is recorded that did not happen.

Who acted is told apart without every caller saying so: a worker's change (complete,
fail, retry) is the system's; a change a person makes (cancel, clear, move, retry) is the
owner's when the acting user owns the entry, staff's otherwise (the admin, the monitor,
or `manage.py queue`, which has no user).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from celery import current_app
from django.db import transaction

from queue_app.errors import InvalidInput
from queue_app.models import (
    Activity,
    ActivityBy,
    ActivityKind,
    EntryStatus,
    QueueEntry,
    UpdateType,
)

logger = logging.getLogger(__name__)

# A note is a sentence or two for the owner, not a letter; longer is refused, not cut.
MAX_NOTE_LENGTH = 500
NOTIFY_CANCELLED_TASK = "queue_app.tasks.notify_cancelled"

# Changes made by workers and the reaper: nobody acted, the system did.
_SYSTEM_CHANGES = {UpdateType.TASK_COMPLETED, UpdateType.TASK_FAILED}
_WITH_REASON = (ActivityKind.FAILED, ActivityKind.RETRYING)


def clean_note(note: Any) -> str:
    """A staff note as stored: text, trimmed, at most MAX_NOTE_LENGTH characters.
    Raises InvalidInput (400, `fields.note`) for anything else, before any change."""
    if note is None:
        return ""
    if not isinstance(note, str):
        raise InvalidInput(fields={"note": ["A note must be text."]})
    note = note.strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise InvalidInput(
            f"A note may be at most {MAX_NOTE_LENGTH} characters.",
            fields={"note": [f"At most {MAX_NOTE_LENGTH} characters."]},
        )
    if "\x00" in note:
        raise InvalidInput(fields={"note": ["A note cannot contain NUL characters."]})
    return note


def _kind(update_type: str, entry: QueueEntry) -> str | None:
    """The outcome this change is for this entry, or None if it is not one (a claim, an
    enqueue)."""
    if update_type == UpdateType.TASK_COMPLETED:
        return ActivityKind.COMPLETED
    if update_type == UpdateType.TASK_FAILED:
        return ActivityKind.FAILED
    if update_type in (UpdateType.MEETING_REMOVED, UpdateType.QUEUE_CLEARED):
        return ActivityKind.CANCELLED
    if update_type == UpdateType.POSITION_UPDATED:
        return ActivityKind.MOVED
    if update_type == UpdateType.TASK_RETRIED:
        # A manual retry resets the attempts; a failed attempt (waiting to retry, or a
        # lost worker's entry back at the front) keeps them.
        if entry.status == EntryStatus.QUEUED and entry.attempts == 0:
            return ActivityKind.RETRIED
        return ActivityKind.RETRYING
    return None


def _by(update_type: str, kind: str, entry: QueueEntry, actor: Any | None) -> str:
    if update_type in _SYSTEM_CHANGES or kind == ActivityKind.RETRYING:
        return ActivityBy.SYSTEM
    if actor is not None and actor.pk == entry.owner_id:
        return ActivityBy.OWNER
    return ActivityBy.STAFF


def record_outcomes(
    *,
    update_type: str,
    seq: int,
    at: datetime,
    global_position: int | None,
    entries: Iterable[QueueEntry],
    payload: list[dict[str, Any]],
    note: str = "",
    actor: Any | None = None,
) -> list[Activity]:
    """Store what the change `seq` (about to be logged) did to each of `entries` that is
    an outcome for its owner, and put each outcome into its entry in the event's
    `payload` (`outcome`), so the owner's page learns live who acted and why (redaction
    keeps it from everyone else). Called before the event's INSERT, which then carries
    the outcomes: one statement for the event, one for its outcomes (none when there are
    none).

    A move is recorded only when someone other than the owner made it (users cannot move
    entries; staff can, and the owner should learn why). Staff cancellations are emailed
    to the owners after commit.
    """
    rows = []
    for entry in entries:
        kind = _kind(update_type, entry)
        if kind is None:
            continue
        by = _by(update_type, kind, entry, actor)
        if kind == ActivityKind.MOVED and by == ActivityBy.OWNER:
            continue
        rows.append(
            Activity(
                user_id=entry.owner_id,
                entry=entry,
                meeting_id=entry.meeting_id,
                title=str(entry.meeting)[:500],
                kind=kind,
                by=by,
                actor=actor if by != ActivityBy.SYSTEM else None,
                note=note if by == ActivityBy.STAFF else "",
                reason=entry.last_error if kind in _WITH_REASON else "",
                result_url=entry.result_url if kind == ActivityKind.COMPLETED else "",
                position=global_position if kind == ActivityKind.MOVED else None,
                next_attempt_at=entry.next_attempt_at if kind == ActivityKind.RETRYING else None,
                seq=seq,
                created_at=at,
            )
        )
    if not rows:
        return []
    created = Activity.objects.bulk_create(rows)
    by_entry = {str(row.entry_id): row for row in created}
    for item in payload:
        row = by_entry.get(item["id"])
        if row is not None:
            item["outcome"] = {
                "activity_id": row.pk,
                "kind": row.kind,
                "by": row.by,
                "note": row.note,
            }
    emailed = [
        row.pk
        for row in created
        if row.kind == ActivityKind.CANCELLED and row.by == ActivityBy.STAFF and row.pk
    ]
    if emailed:
        transaction.on_commit(lambda: _send_notice(emailed))
    return created


def _send_notice(activity_ids: list[int]) -> None:
    try:
        current_app.send_task(NOTIFY_CANCELLED_TASK, args=[activity_ids])
    except Exception:  # a broker hiccup must not fail the change, which is committed
        logger.warning("could not ask for the cancellation emails of %d entries", len(activity_ids))
