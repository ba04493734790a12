"""The line as users and staff shape it: enqueue, cancel, move, retry, clear, pause,
resume, and pruning the event log. Each call is one transaction and one event
(services.changes), and returns what it did.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from queue_app import selectors, transitions
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
from queue_app.services import activity
from queue_app.services.changes import (
    close_attempts,
    lock_queue,
    locked_entry,
    record,
    request_dispatch,
)

# Room between neighbouring order keys. Each move into a gap takes its midpoint, halving
# it, so 16 moves into the same gap fit before the line is renumbered (tests/unit/test_ordering).
KEY_GAP = 1 << 16

Position = int | Literal["top", "bottom"]


def back_key() -> int:
    """An order key behind every queued entry."""
    last = QueueEntry.objects.filter(status=EntryStatus.QUEUED).aggregate(k=Max("order_key"))["k"]
    return (last or 0) + KEY_GAP


def front_key() -> int:
    """An order key ahead of every queued entry."""
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


def _refuse_if_in_line(meeting_id: int) -> None:
    if QueueEntry.objects.filter(meeting_id=meeting_id, status__in=ACTIVE_STATUSES).exists():
        raise AlreadyQueued()


def entry_enqueue(*, meeting: Meeting, max_attempts: int | None = None) -> QueueEntry:
    """Put a meeting at the back of the line. Raises AlreadyQueued if it is in it."""
    try:
        with transaction.atomic():
            state = lock_queue()
            _refuse_if_in_line(meeting.pk)
            created = QueueEntry.objects.create(
                meeting=meeting,
                owner_id=meeting.owner_id,
                status=transitions.ENQUEUE.target,
                order_key=back_key(),
                max_attempts=max_attempts or settings.QUEUE_MAX_ATTEMPTS,
            )
            entry = QueueEntry.objects.select_related("meeting", "owner").get(pk=created.pk)
            record(
                state,
                transitions.ENQUEUE.update_type,
                entries=[entry],
                global_position=selectors.entry_position(entry),
            )
            request_dispatch()
    except IntegrityError as exc:  # the partial unique index, if the check above raced
        raise AlreadyQueued() from exc
    return entry


def entry_cancel(*, entry_id: UUID | str, note: str = "", actor: Any | None = None) -> QueueEntry:
    """Take an entry out of the line (or stop it: its worker sees it at the next heartbeat).
    `note`: staff's word to the owner; `actor`: who cancels (None: an operator)."""
    note = activity.clean_note(note)
    with transaction.atomic():
        state = lock_queue()
        entry = locked_entry(entry_id)
        transitions.CANCEL.check(entry)
        former_position = selectors.entry_position(entry)
        now = timezone.now()
        transitions.CANCEL.apply(entry, now)
        close_attempts([entry], AttemptOutcome.CANCELLED, now, error="Cancelled.")
        record(
            state,
            transitions.CANCEL.update_type,
            entries=[entry],
            global_position=former_position,
            note=note,
            actor=actor,
        )
        request_dispatch()
    return entry


def entry_move(
    *, entry_id: UUID | str, position: Position, note: str = "", actor: Any | None = None
) -> QueueEntry:
    """Move a queued entry to `position` (1 is the front), "top" or "bottom"."""
    note = activity.clean_note(note)
    with transaction.atomic():
        state = lock_queue()
        entry = locked_entry(entry_id)
        transitions.MOVE.check(entry)
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
            transitions.MOVE.apply(entry, timezone.now(), order_key=key)
        record(
            state,
            transitions.MOVE.update_type,
            entries=[entry],
            global_position=position,
            same_length=True,
            note=note,
            actor=actor,
        )
    return entry


def entry_retry(*, entry_id: UUID | str, actor: Any | None = None) -> QueueEntry:
    """Put a failed or cancelled entry back at the end of the line, attempts reset."""
    try:
        with transaction.atomic():
            state = lock_queue()
            entry = locked_entry(entry_id)
            transitions.RETRY.check(entry)
            _refuse_if_in_line(entry.meeting_id)
            transitions.RETRY.apply(entry, timezone.now(), order_key=back_key())
            record(
                state,
                transitions.RETRY.update_type,
                entries=[entry],
                global_position=selectors.entry_position(entry),
                actor=actor,
            )
            request_dispatch()
    except IntegrityError as exc:
        raise AlreadyQueued() from exc
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


def _append_to_line(entries: list[QueueEntry]) -> dict[Any, int]:
    """Keys behind the line for `entries`, in order; their positions by id."""
    ahead = selectors.queued_entries().count()
    first_key = back_key()
    positions = {}
    for index, entry in enumerate(entries):
        entry.order_key = first_key + index * KEY_GAP
        positions[entry.pk] = ahead + index + 1
    return positions


def entries_enqueue(*, owner: Any, meeting_ids: Iterable[int | str]) -> BulkChange:
    """Put the owner's meetings at the back of the line, in the order given: one
    transaction and one event for all. Refused, each with its reason: a meeting that is
    not found, not the owner's, or already in the line."""
    wanted = _unique(meeting_ids)
    refused: list[Refusal] = []
    with transaction.atomic():
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
                        order_key=0,
                        max_attempts=settings.QUEUE_MAX_ATTEMPTS,
                    )
                )
        if not new:
            return BulkChange(refused=refused)
        positions = _append_to_line(new)
        # The objects are complete once inserted (ids and timestamps are set here, meeting
        # and owner attached): no reading 2,000 rows back.
        QueueEntry.objects.bulk_create(new)
        created = new
        record(
            state,
            transitions.ENQUEUE.update_type,
            entries=created,
            global_position=positions[created[0].pk],
            positions=positions,
        )
        request_dispatch()
    return BulkChange(entries=created, refused=refused)


def entries_enqueue_matching(*, owner: Any, filters: dict[str, Any], limit: int) -> BulkChange:
    """Queue every meeting of the owner's that `filters` select (selectors.meetings_of:
    search, state, recorded_from, recorded_to, team), in the library's order (newest
    first), as entries_enqueue does: one transaction, one event, refusals for those already
    in the line. More than `limit` matching is refused whole (InvalidInput), nothing
    queued: the caller narrows the filter rather than getting an arbitrary part."""
    with transaction.atomic():
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
    entries = QueueEntry.objects.select_for_update(of=("self",)).select_related("meeting", "owner")
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
    with transaction.atomic():
        state = lock_queue()
        entries, refused = _bulk_transition(_unique(entry_ids), owner, transitions.CANCEL)
        if not entries:
            return BulkChange(refused=refused)
        former = selectors.entry_positions()
        now = timezone.now()
        values = transitions.CANCEL.values(now)
        QueueEntry.objects.filter(pk__in=[entry.pk for entry in entries]).update(**values)
        for entry in entries:
            for name, value in values.items():
                setattr(entry, name, value)
        close_attempts(entries, AttemptOutcome.CANCELLED, now, error="Cancelled.")
        record(
            state,
            transitions.CANCEL.update_type,
            entries=entries,
            global_position=former.get(entries[0].pk) if len(entries) == 1 else None,
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
    with transaction.atomic():
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
        positions = _append_to_line(able)
        values = transitions.RETRY.values(timezone.now())
        for entry in able:
            for name, value in values.items():
                setattr(entry, name, value)
        QueueEntry.objects.bulk_update(able, [*values, "order_key"])
        record(
            state,
            transitions.RETRY.update_type,
            entries=able,
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
    with transaction.atomic():
        state = lock_queue()
        waiting = list(
            QueueEntry.objects.select_for_update(of=("self",))
            .select_related("meeting", "owner")
            .filter(status__in=clear.sources)
            .order_by("order_key")
        )
        if not waiting:
            return 0
        values = clear.values(timezone.now())
        QueueEntry.objects.filter(pk__in=[entry.pk for entry in waiting]).update(**values)
        for entry in waiting:
            for name, value in values.items():
                setattr(entry, name, value)
        record(state, clear.update_type, entries=waiting, note=note, actor=actor)
    return len(waiting)


def _set_paused(paused: bool, note: str = "") -> bool:
    note = activity.clean_note(note)
    with transaction.atomic():
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
