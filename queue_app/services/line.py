"""The line as users and staff shape it: enqueue, cancel, move, retry, clear, pause,
resume, and pruning the event log. Each call is one transaction and one event
(services.changes), and returns what it did.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from psycopg.errors import UniqueViolation

from queue_app import selectors, sql, transitions
from queue_app.errors import (
    AlreadyQueued,
    EntryNotFound,
    InvalidInput,
    InvalidPosition,
    InvalidState,
)
from queue_app.models import (
    ACTIVE_STATUSES,
    AttemptOutcome,
    EntryStatus,
    Meeting,
    QueueEntry,
    QueueEvent,
    UpdateType,
)
from queue_app.services import activity, ordering
from queue_app.services.changes import (
    close_attempts,
    entry_from_json,
    lock_queue,
    lock_queue_reading,
    locked_entry,
    publish_told,
    queue_change,
    record,
    request_dispatch,
    run_by_the_server,
    was,
    with_people,
)

Position = int | Literal["top", "bottom"]


def _refuse_if_in_line(meeting_id: int) -> None:
    if QueueEntry.objects.filter(meeting_id=meeting_id, status__in=ACTIVE_STATUSES).exists():
        raise AlreadyQueued()


def _owner_check(meeting: Meeting) -> tuple[str, list[Any]]:
    """The statement that reads the meeting's owner's username and whether the meeting is
    in the line (the event names the owner): plain SQL, read with the queue lock
    (changes.lock_queue_reading), where the ORM's building of it took several times its
    round trip."""
    user_model = get_user_model()
    username = user_model._meta.get_field(user_model.USERNAME_FIELD)
    qn, entries = connection.ops.quote_name, QueueEntry._meta
    return (
        f"SELECT {qn(username.column)}, EXISTS(SELECT 1 FROM {qn(entries.db_table)}"
        f" WHERE {qn(entries.get_field('meeting').column)} = %s"
        f" AND {qn(entries.get_field('status').column)} IN (%s, %s, %s))"
        f" FROM {qn(user_model._meta.db_table)} WHERE {qn(user_model._meta.pk.column)} = %s",
        [meeting.pk, *(status.value for status in ACTIVE_STATUSES), meeting.owner_id],
    )


def _owner_unless_in_line(meeting: Meeting, found: list[tuple[Any, ...]]) -> Any:
    """The meeting's owner (id and username; other fields load when read) from
    _owner_check's row; AlreadyQueued if the meeting is in the line."""
    # A meeting's owner cannot be gone: deleting them deletes their meetings.
    name, in_line = found[0]
    if in_line:
        raise AlreadyQueued()
    return _user(meeting.owner_id, name)


def _user(pk: int, name: str) -> Any:
    """A user with their id and username (the other fields load when read)."""
    user_model = get_user_model()
    names = [
        user_model._meta.pk.attname,
        user_model._meta.get_field(user_model.USERNAME_FIELD).attname,
    ]
    return user_model.from_db(connection.alias, names, [pk, name])


def _refused_as_in_line(exc: IntegrityError) -> bool:
    """Whether `exc` is the partial unique index's refusal (the meeting has an active
    entry: a check that raced, or a row written around the services), told as
    AlreadyQueued; any other constraint's is an error of the caller's, raised as it is."""
    cause = exc.__cause__
    return isinstance(cause, UniqueViolation) or "UNIQUE constraint failed" in str(cause)


def entry_enqueue(*, meeting: Meeting, max_attempts: int | None = None) -> QueueEntry:
    """Put a meeting in the line (at its owner's next round: services.ordering). Raises
    AlreadyQueued if it is in it.

    On PostgreSQL the server runs the whole change (queue_enqueue, migration 0011) in one
    round trip; the enqueue below is its definition, and runs where the function cannot
    (SQLite; no queue state row yet; the line's keys to be renumbered). There it is three
    round trips under the lock: the lock with everything the change reads, the writes
    with the entry's position, the state and the event with COMMIT (changes.queue_change).
    """
    max_attempts = max_attempts or settings.QUEUE_MAX_ATTEMPTS
    if connection.vendor == "postgresql":
        added = _enqueue_by_the_server(meeting, max_attempts)
        if added is not None:
            return added
    try:
        with queue_change():
            state, (owner_row, *key_rows) = lock_queue_reading(
                [_owner_check(meeting), *ordering.key_reads([meeting.owner_id])]
            )
            owner = _owner_unless_in_line(meeting, owner_row)
            entry = QueueEntry(
                meeting=meeting,
                owner=owner,
                status=transitions.ENQUEUE.target,
                max_attempts=max_attempts,
            )
            ordering.assign_keys(state, [entry], key_rows)
            # Complete once inserted (id, timestamps, meeting and owner attached): no
            # reading it back.
            sql.insert([entry])
            position = ordering.position_on_joining(state, entry)
            record(
                state,
                transitions.ENQUEUE.update_type,
                entries=[entry],
                global_position=position,
                positions={entry.pk: position},
            )
            request_dispatch()
    except IntegrityError as exc:
        if _refused_as_in_line(exc):
            raise AlreadyQueued() from exc
        raise
    return entry


_ENQUEUE_SQL = "SELECT queue_enqueue(%s, %s, %s, %s, %s, %s, %s)"


def _enqueue_by_the_server(meeting: Meeting, max_attempts: int) -> QueueEntry | None:
    """entry_enqueue's change as queue_enqueue() runs it: the entry (its meeting and owner
    attached, as the Python enqueue leaves them), its event published after commit and a
    dispatch asked for; None when the function leaves the enqueue to Python.
    AlreadyQueued if the meeting is in the line, nothing changed.

    In a caller's transaction, in a savepoint of its own as queue_change's block would
    be, so that an error in the function leaves that transaction usable."""
    now = timezone.now()
    level = settings.QUEUE_SYNCHRONOUS_COMMIT
    params = [
        uuid.uuid4(),
        meeting.pk,
        meeting.owner_id,
        max_attempts,
        now,
        ordering.is_fair(),
        None if level == "on" else level,
    ]
    try:
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            result = run_by_the_server(_ENQUEUE_SQL, params)
    except IntegrityError as exc:
        if _refused_as_in_line(exc):
            raise AlreadyQueued() from exc
        raise
    if result["outcome"] == "fallback":
        return None
    if result["outcome"] == "in_line":
        raise AlreadyQueued()
    entry = entry_from_json(result["entry"])
    entry.meeting = meeting
    entry.owner = _user(meeting.owner_id, result["owner"])
    publish_told(result["event"], transitions.ENQUEUE.update_type, entry, now)
    request_dispatch()
    return entry


def entry_cancel(*, entry_id: UUID | str, note: str = "", actor: Any | None = None) -> QueueEntry:
    """Take an entry out of the line (or stop it: its worker sees it at the next heartbeat).
    `note`: staff's word to the owner; `actor`: who cancels (None: an operator)."""
    note = activity.clean_note(note)
    with queue_change():
        state = lock_queue()
        entry = locked_entry(entry_id)
        transitions.CANCEL.check(entry)
        before = was([entry])
        status, former_position = before[entry.pk]
        now = timezone.now()
        transitions.CANCEL.apply(entry, now)
        ordering.moved(state, [entry], [status])
        close_attempts([entry], AttemptOutcome.CANCELLED, now, error="Cancelled.")
        record(
            state,
            transitions.CANCEL.update_type,
            entries=[entry],
            before=before,
            global_position=former_position,
            positions={},
            note=note,
            actor=actor,
        )
        request_dispatch()
    return entry


def entry_move(
    *, entry_id: UUID | str, position: Position, note: str = "", actor: Any | None = None
) -> QueueEntry:
    """Move a queued entry to `position` (1 is the front), "top" or "bottom". It stays
    pinned there: later entries take their places around it by their own keys."""
    note = activity.clean_note(note)
    with queue_change():
        state = lock_queue()
        entry = locked_entry(entry_id)
        transitions.MOVE.check(entry)
        length = state.waiting
        bottom = position == "bottom"
        if position == "top":
            position = 1
        elif bottom:
            position = length
        if isinstance(position, bool) or not isinstance(position, int):
            raise InvalidPosition("Position must be a whole number, 'top' or 'bottom'.")
        if not 1 <= position <= length:
            raise InvalidPosition(f"Position must be between 1 and {length}.")
        before = was([entry])
        if position != before[entry.pk][1]:
            if position == length:
                key = ordering.back_key(state)
            else:
                key = ordering.key_for_position(state, entry, position)
                if key is None:
                    ordering.renumber(state)
                    key = ordering.key_for_position(state, entry, position)
            transitions.MOVE.apply(entry, timezone.now(), order_key=key)
        record(
            state,
            transitions.MOVE.update_type,
            entries=[entry],
            before=before,
            global_position=position,
            positions={entry.pk: position},
            note=note,
            actor=actor,
        )
    return entry


def entry_retry(*, entry_id: UUID | str, actor: Any | None = None) -> QueueEntry:
    """Put a failed or cancelled entry back in the line (as if it joined now), attempts
    reset."""
    try:
        with queue_change():
            state = lock_queue()
            entry = locked_entry(entry_id)
            transitions.RETRY.check(entry)
            _refuse_if_in_line(entry.meeting_id)
            before = {entry.pk: (entry.status, None)}
            ordering.assign_keys(state, [entry])
            transitions.RETRY.apply(entry, timezone.now(), order_key=entry.order_key)
            position = ordering.position_on_joining(state, entry)
            record(
                state,
                transitions.RETRY.update_type,
                entries=[entry],
                before=before,
                global_position=position,
                positions={entry.pk: position},
                actor=actor,
            )
            request_dispatch()
    except IntegrityError as exc:
        if _refused_as_in_line(exc):
            raise AlreadyQueued() from exc
        raise
    return entry


@dataclass(frozen=True)
class Refusal:
    """One item of a bulk change that was not carried out, and why (a stable code)."""

    id: str
    code: str
    detail: str


@dataclass(frozen=True)
class BulkChange:
    """What a bulk change did: the entries it changed (one event for all, if any) and
    what it refused."""

    entries: list[QueueEntry] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def _unique(ids: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(str(value) for value in ids))


def _join_line(state: Any, entries: list[QueueEntry]) -> dict[Any, int]:
    """Keys for `entries` joining the line (in the order given, services.ordering), and
    their positions by id: one count of the line ahead of the first, and the keys of the
    entries between the first and the last (none in fifo order: they join at the back)."""
    ordering.assign_keys(state, entries)
    places = selectors.positions_of_keys([entry.order_key for entry in entries])
    return {entry.pk: places[entry.order_key] for entry in entries}


def entries_enqueue(*, owner: Any, meeting_ids: Iterable[int | str]) -> BulkChange:
    """Put the owner's meetings in the line (each in the owner's next round, in the order
    given: services.ordering; at the back with QUEUE_ORDERING=fifo): one
    transaction and one event for all. Refused, each with its reason: a meeting that is
    not found, not the owner's, or already in the line."""
    wanted = _unique(meeting_ids)
    refused: list[Refusal] = []
    with queue_change():
        state = lock_queue()
        numeric = [int(pk) for pk in wanted if pk.isascii() and pk.isdigit()]
        # Only what the entries' payloads read: `raw` (Fathom's whole description) and the
        # summary of 2,000 meetings cost more to load than the rest of the change.
        meetings = {
            str(m.pk): m
            for m in Meeting.objects.filter(pk__in=numeric).only(
                "id", "owner_id", "title", "meeting_title", "recording_id"
            )
        }
        in_line = {
            str(pk)
            for pk in QueueEntry.objects.filter(
                meeting_id__in=numeric, status__in=ACTIVE_STATUSES
            ).values_list("meeting_id", flat=True)
        }
        new: list[QueueEntry] = []
        for pk in wanted:
            meeting = meetings.get(pk)
            if meeting is None:
                refused.append(Refusal(pk, "not_found", "No such meeting."))
            elif meeting.owner_id != owner.pk:
                refused.append(Refusal(pk, "not_yours", "This meeting is someone else's."))
            elif pk in in_line:
                refused.append(Refusal(pk, AlreadyQueued.code, AlreadyQueued.default_detail))
            else:
                new.append(
                    QueueEntry(
                        meeting=meeting,
                        owner=owner,
                        status=transitions.ENQUEUE.target,
                        max_attempts=settings.QUEUE_MAX_ATTEMPTS,
                    )
                )
        if not new:
            return BulkChange(refused=refused)
        positions = _join_line(state, new)
        # The objects are complete once inserted (ids and timestamps are set here, meeting
        # and owner attached): no reading 2,000 rows back.
        QueueEntry.objects.bulk_create(new)
        record(
            state,
            transitions.ENQUEUE.update_type,
            entries=new,
            global_position=positions[new[0].pk],
            positions=positions,
        )
        request_dispatch()
    return BulkChange(entries=new, refused=refused)


def entries_enqueue_matching(*, owner: Any, filters: dict[str, Any], limit: int) -> BulkChange:
    """Queue every meeting of the owner's that `filters` select (selectors.meetings_of:
    search, state, recorded_from, recorded_to, team), in the library's order (newest
    first), as entries_enqueue does: one transaction, one event, refusals for those already
    in the line. More than `limit` matching is refused whole (InvalidInput), nothing
    queued: the caller narrows the filter rather than getting an arbitrary part."""
    with queue_change():
        lock_queue()  # the match and the enqueue see the same line
        meeting_ids = list(
            selectors.meetings_of(user=owner, **filters).values_list("pk", flat=True)[: limit + 1]
        )
        if len(meeting_ids) > limit:
            message = (
                f"More than {limit:,} meetings match; queue at most {limit:,} at once:"
                " narrow the search, the dates or the state."
            )
            raise InvalidInput(message, fields={"matching": [message]})
        return entries_enqueue(owner=owner, meeting_ids=meeting_ids)


def _locked_entries(ids: list[str], *, owner: Any | None) -> dict[str, QueueEntry]:
    """The entries named by `ids` that exist (and are `owner`'s, unless None), locked."""
    valid = []
    for pk in ids:
        try:
            valid.append(UUID(pk))
        except ValueError:
            continue
    entries = with_people(QueueEntry.objects.select_for_update(of=("self",)))
    if owner is not None:
        entries = entries.filter(owner_id=owner.pk)
    return {str(entry.pk): entry for entry in entries.filter(pk__in=valid)}


def _bulk_transition(
    ids: list[str], owner: Any | None, step: transitions.Transition
) -> tuple[list[QueueEntry], list[Refusal]]:
    """Entries that may take `step`, in the order given, and refusals for the rest."""
    found = _locked_entries(ids, owner=owner)
    able, refused = [], []
    for pk in ids:
        entry = found.get(pk)
        if entry is None:
            refused.append(Refusal(pk, EntryNotFound.code, "No such queue entry."))
            continue
        try:
            step.check(entry)
        except InvalidState as exc:
            refused.append(Refusal(pk, exc.code, exc.detail))
            continue
        able.append(entry)
    return able, refused


def entries_cancel(
    *,
    entry_ids: Iterable[Any],
    owner: Any | None = None,
    note: str = "",
    actor: Any | None = None,
) -> BulkChange:
    """Cancel several entries in one transaction and one event. `owner`: only theirs
    (others' are refused as not found, like a missing one); None for staff."""
    note = activity.clean_note(note)
    if actor is None:
        actor = owner
    with queue_change():
        state = lock_queue()
        entries, refused = _bulk_transition(_unique(entry_ids), owner, transitions.CANCEL)
        if not entries:
            return BulkChange(refused=refused)
        keys = [entry.order_key for entry in entries if entry.status == EntryStatus.QUEUED]
        places = selectors.positions_of_keys(keys) if keys else {}
        before = {
            entry.pk: (entry.status, places.get(entry.order_key))
            if entry.status == EntryStatus.QUEUED
            else (entry.status, None)
            for entry in entries
        }
        former = before[entries[0].pk][1] if len(entries) == 1 else None
        statuses = [entry.status for entry in entries]
        now = timezone.now()
        values = transitions.CANCEL.values(now)
        QueueEntry.objects.filter(pk__in=[entry.pk for entry in entries]).update(**values)
        for entry in entries:
            for name, value in values.items():
                setattr(entry, name, value)
        ordering.moved(state, entries, statuses)
        close_attempts(entries, AttemptOutcome.CANCELLED, now, error="Cancelled.")
        record(
            state,
            transitions.CANCEL.update_type,
            entries=entries,
            before=before,
            global_position=former,
            positions={},
            note=note,
            actor=actor,
        )
        request_dispatch()
    return BulkChange(entries=entries, refused=refused)


def entries_retry(
    *, entry_ids: Iterable[Any], owner: Any | None = None, actor: Any | None = None
) -> BulkChange:
    """Put several failed or cancelled entries back at the end of the line, in the order
    given, attempts reset: one transaction and one event. A meeting already in the line
    (or twice in the request) is refused as already queued."""
    with queue_change():
        state = lock_queue()
        entries, refused = _bulk_transition(_unique(entry_ids), owner, transitions.RETRY)
        busy = set(
            QueueEntry.objects.filter(
                meeting_id__in=[entry.meeting_id for entry in entries],
                status__in=ACTIVE_STATUSES,
            ).values_list("meeting_id", flat=True)
        )
        able = []
        for entry in entries:
            if entry.meeting_id in busy:
                refused.append(
                    Refusal(str(entry.pk), AlreadyQueued.code, AlreadyQueued.default_detail)
                )
                continue
            busy.add(entry.meeting_id)
            able.append(entry)
        if not able:
            return BulkChange(refused=refused)
        before = {entry.pk: (entry.status, None) for entry in able}
        positions = _join_line(state, able)
        values = transitions.RETRY.values(timezone.now())
        for entry in able:
            for name, value in values.items():
                setattr(entry, name, value)
        QueueEntry.objects.bulk_update(able, [*values, "order_key"])
        record(
            state,
            transitions.RETRY.update_type,
            entries=able,
            before=before,
            global_position=positions[able[0].pk],
            positions=positions,
            actor=actor or owner,
        )
        request_dispatch()
    return BulkChange(entries=able, refused=refused)


def queue_clear(*, note: str = "", actor: Any | None = None) -> int:
    """Cancel every entry waiting in the line (running transfers go on). Returns how many.
    `note` reaches every owner whose entries it cancels."""
    note = activity.clean_note(note)
    clear = transitions.CLEAR
    with queue_change():
        state = lock_queue()
        waiting = list(
            with_people(QueueEntry.objects.select_for_update(of=("self",)))
            .filter(status__in=clear.sources)
            .order_by("order_key")
        )
        if not waiting:
            return 0
        line = [entry for entry in waiting if entry.status == EntryStatus.QUEUED]
        before = {entry.pk: (entry.status, None) for entry in waiting}
        before.update({entry.pk: (entry.status, n) for n, entry in enumerate(line, start=1)})
        values = clear.values(timezone.now())
        QueueEntry.objects.filter(pk__in=[entry.pk for entry in waiting]).update(**values)
        for entry in waiting:
            for name, value in values.items():
                setattr(entry, name, value)
        ordering.line_cleared(state)
        record(
            state,
            clear.update_type,
            entries=waiting,
            before=before,
            positions={},
            note=note,
            actor=actor,
        )
    return len(waiting)


def _set_paused(paused: bool, note: str = "") -> bool:
    note = activity.clean_note(note)
    with queue_change():
        state = lock_queue()
        if state.paused == paused:
            return False
        state.paused = paused
        state.pause_note = note if paused else ""
        state.save(update_fields=["paused", "pause_note", "updated_at"])
        record(state, UpdateType.QUEUE_PAUSED if paused else UpdateType.QUEUE_RESUMED, entries=[])
        if not paused:
            request_dispatch()
    return True


def queue_pause(*, note: str = "") -> bool:
    """Stop handing out work; running transfers finish. False if already paused.
    `note`: why, shown to everyone waiting until the queue resumes."""
    return _set_paused(True, note)


def queue_resume() -> bool:
    """Start handing out work again. False if not paused."""
    return _set_paused(False)


def events_prune(*, older_than: timedelta | None = None) -> int:
    """Delete events past the retention window. Resuming from before it gets a snapshot."""
    if older_than is None:
        older_than = timedelta(hours=settings.QUEUE_EVENT_RETENTION_HOURS)
    cutoff = timezone.now() - older_than
    # Always keep the newest event: it tells a resuming client how far the log goes.
    newest = QueueEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    deleted, _ = QueueEvent.objects.filter(Q(created_at__lt=cutoff) & ~Q(seq=newest)).delete()
    return deleted
