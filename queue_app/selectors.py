"""Reads of the queue: positions, ETAs, and the snapshot each viewer may see.

Position is derived, never stored: 1 + the number of queued entries ahead in order_key
order. Running and retrying entries have no position.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from datetime import date
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from queue_app import estimates, events, sql
from queue_app.events import (
    ENTRY_COLUMNS,
    OFF_LINE_STATUSES,
    Viewer,
    entry_for_viewer,
    entry_payload,
    entry_row,
    event_for_viewer,
    event_message,
    isoformat,
    snapshot_for_viewer,
    snapshot_message,
    username_column,
)
from queue_app.models import (
    ACTIVE_STATUSES,
    AttemptOutcome,
    EntryStatus,
    Meeting,
    QueueEntry,
    QueueEvent,
    QueueOwner,
    QueueState,
    TransferAttempt,
)

# A viewer with up to this many entries past the head gets a count each for their
# positions; more, one read of the line's keys between their first and last.
OWN_COUNTS = 20
# Transfer times averaged for ETAs; the default stands in until one has completed.
ETA_SAMPLE_SIZE = 20
DEFAULT_TRANSFER_SECONDS = 60.0


def queue_state() -> QueueState:
    """The queue's state row; an unsaved default while none exists (a data migration
    creates it, but a test database flush removes it and the first service call makes it)."""
    return QueueState.objects.filter(pk=1).first() or QueueState(pk=1)


# What a snapshot reads of the queue state (locked_state).
STATE_COLUMNS = ("last_seq", "paused", "waiting", "running", "retrying")


def locked_state() -> QueueState:
    """The queue state's row, locked until the transaction ends (inside one: locking it
    waits out any writer, so what is read after agrees with its seq), with the fields a
    snapshot reads (STATE_COLUMNS); an unsaved default while none exists. One plain
    statement, built once (bench/notes.md, "Window snapshot and connect, second pass")."""
    return _state(lock=True)


def queue_state_now() -> QueueState:
    """locked_state() without the lock: the fields a snapshot reads, as of now."""
    return _state(lock=False)


def _state(*, lock: bool) -> QueueState:
    found = sql.rows(_state_sql(lock), [])
    if not found:
        return QueueState()
    values = dict(zip(STATE_COLUMNS, found[0], strict=True))
    values["paused"] = bool(values["paused"])  # SQLite gives 0 or 1
    return QueueState(pk=1, **values)


@functools.cache
def _state_sql(lock: bool) -> str:
    lock_clause = " FOR UPDATE" if lock and connection.features.has_select_for_update else ""
    return (
        f"SELECT {', '.join(sql.column(QueueState, name) for name in STATE_COLUMNS)}"
        f" FROM {sql.table(QueueState)} WHERE {sql.column(QueueState, 'id')} = 1{lock_clause}"
    )


def current_seq() -> int:
    """The seq of the newest event: what a snapshot read now would include. Plain SQL,
    built once: the hub asks for every burst of connecting sockets, in daphne's one
    database thread, whose Python holds the event loop's GIL."""
    found = sql.rows(_current_seq_sql(), [])
    return (found[0][0] if found else None) or 0


@functools.cache
def _current_seq_sql() -> str:
    return (
        f"SELECT {sql.column(QueueState, 'last_seq')} FROM {sql.table(QueueState)}"
        f" WHERE {sql.column(QueueState, 'id')} = 1"
    )


def queued_entries():
    # Order keys are unique in the line (services.ordering), so the index gives the order.
    return QueueEntry.objects.filter(status=EntryStatus.QUEUED).order_by("order_key")


def entry_positions() -> dict[UUID, int]:
    """Position of every queued entry, in one query."""
    rows = (
        QueueEntry.objects.filter(status=EntryStatus.QUEUED)
        .annotate(position=Window(RowNumber(), order_by=[F("order_key").asc()]))
        .values_list("id", "position")
    )
    return dict(rows)


def entry_position(entry: QueueEntry) -> int | None:
    """1 + the queued entries ahead: one count on the (status, order_key) index."""
    if entry.status != EntryStatus.QUEUED:
        return None
    return counts_ahead([entry.order_key])[entry.order_key] + 1


def _queued_count_sql(comparison: str) -> str:
    """A count of the queued entries whose order key is `comparison` ("<" or ">") a
    parameter, on the (status, order_key) index, in plain SQL (queue_app.sql): changes
    ask under the queue lock."""
    return (
        f"(SELECT COUNT(*) FROM {sql.table(QueueEntry)}"
        f" WHERE {sql.column(QueueEntry, 'status')} = %s"
        f" AND {sql.column(QueueEntry, 'order_key')} {comparison} %s)"
    )


def counts_ahead(keys: list[int]) -> dict[int, int]:
    """How many queued entries stand ahead of each of these order keys: a count each,
    in one statement (one round trip)."""
    if not keys:
        return {}
    [counts] = sql.rows(
        "SELECT " + ", ".join([_queued_count_sql("<")] * len(keys)),
        [value for key in keys for value in (EntryStatus.QUEUED.value, key)],
    )
    return dict(zip(keys, counts, strict=True))


def queued_behind(order_key: int) -> int:
    """How many queued entries stand behind the one with `order_key` (one count)."""
    [(count,)] = sql.rows("SELECT " + _queued_count_sql(">"), [EntryStatus.QUEUED.value, order_key])
    return count


def average_transfer_seconds() -> float:
    """Moving average of the most recent completed transfers' durations."""
    recent = (
        QueueEntry.objects.filter(
            status=EntryStatus.COMPLETED, started_at__isnull=False, finished_at__isnull=False
        )
        .order_by("-finished_at")
        .values_list("started_at", "finished_at")[:ETA_SAMPLE_SIZE]
    )
    durations = [(done - start).total_seconds() for start, done in recent]
    if not durations:
        return DEFAULT_TRANSFER_SECONDS
    return max(sum(durations) / len(durations), 0.0)


def active_entries() -> list[dict[str, Any]]:
    """Every active entry in full, running ones first, then the line in order (a pass
    over the whole line: for pages and operators, never for a socket)."""
    positions = entry_positions()
    rows = (
        QueueEntry.objects.filter(status__in=ACTIVE_STATUSES)
        .order_by("order_key")
        .values(*ENTRY_COLUMNS, username_column())
    )
    line = estimates.line_estimates()
    result = [_payload_with_eta(row, positions.get(row["id"]), line) for row in rows]
    result.sort(key=lambda e: (e["position"] is not None, e["position"] or 0))
    return result


def window_entries(
    *, owner_id: int | None = None, places: int | None = None, state: QueueState | None = None
) -> list[dict[str, Any]]:
    """A window in full (by default the widest, events.STAFF_HEAD_PLACES): the entries off
    the line (running, waiting to retry), the first `places` of the line, and `owner_id`'s
    entries further back, each with its position (one index-backed count each). Off the
    line first, then the line in order.

    Every socket that connects reads one (the hub's shared snapshot; GET /api/queue; the
    pages), so it is two statements in plain SQL (queue_app.sql), built once: the window's
    rows, and the counts ahead of the owner's entries past the head when there are any.
    Through the ORM it was five, whose building took longer than their round trips
    (bench/notes.md, "Window snapshot and connect, second pass")."""
    line = estimates.place_estimates(state=state)
    places = events.STAFF_HEAD_PLACES if places is None else places
    params: list[Any] = [*(status.value for status in OFF_LINE_STATUSES)]
    params += [EntryStatus.QUEUED.value, places]
    if owner_id is not None:
        params += [owner_id, EntryStatus.QUEUED.value, EntryStatus.QUEUED.value, places - 1]
    rows = sql.entry_rows(_window_sql(owner_id is not None), params, extra=("order_key",))
    # The statement orders by key: the line's first `places` are the head, and any queued
    # rows after them are the owner's further back.
    queued = [row for row in rows if row["status"] == EntryStatus.QUEUED]
    positions: dict[Any, int | None] = {
        row["id"]: index for index, row in enumerate(queued[:places], start=1)
    }
    if len(queued) > places:
        further = [(row["id"], row["order_key"]) for row in queued[places:]]
        positions.update(_positions_of_further(further))
    result = [_payload_with_eta(row, positions.get(row["id"]), line) for row in rows]
    result.sort(key=lambda e: (e["position"] is not None, e["position"] or 0))
    return result


@functools.cache
def _window_sql(with_owner: bool) -> str:
    """window_entries' statement: the rows (with their order keys, in key order) of the
    entries off the line, the line's first %s, and (with_owner) the queued entries of
    owner %s behind place %s. Which entries comes from the (status, order_key) index
    alone, in subqueries, and then their rows by primary key: a join beside the head's
    LIMIT would let the planner join the whole line first (~0.7 s at 100,000)."""
    entries = sql.table(QueueEntry)
    pk, status, key, owner = (
        sql.column(QueueEntry, name) for name in ("id", "status", "order_key", "owner")
    )
    chosen = (
        f"SELECT o.{pk} FROM {entries} o"
        f" WHERE o.{status} IN ({', '.join(['%s'] * len(OFF_LINE_STATUSES))})"
        f" UNION ALL SELECT h.{pk} FROM (SELECT q.{pk} FROM {entries} q"
        f" WHERE q.{status} = %s ORDER BY q.{key} LIMIT %s) h"
    )
    if with_owner:
        chosen += (
            f" UNION ALL SELECT p.{pk} FROM {entries} p WHERE p.{owner} = %s"
            f" AND p.{status} = %s AND p.{key} > (SELECT l.{key} FROM {entries} l"
            f" WHERE l.{status} = %s ORDER BY l.{key} LIMIT 1 OFFSET %s)"
        )
    return f"{sql.entry_select(('order_key',))} WHERE e.{pk} IN ({chosen}) ORDER BY e.{key}"


def _positions_of_further(further: list[tuple[Any, int]]) -> dict[Any, int]:
    """The positions of queued entries (id, order key) behind a window's head."""
    if len(further) <= OWN_COUNTS:
        # A count each, on the index alone (~0.1 ms for one a few thousand places back),
        # all in one statement.
        ahead = counts_ahead([key for _, key in further])
        return {pk: ahead[key] + 1 for pk, key in further}
    places = positions_of_keys([key for _, key in further])
    return {pk: places[key] for pk, key in further}


def _positions_past(owner_id: int, key: int) -> dict[Any, int]:
    """The positions of `owner_id`'s queued entries behind the one with order key `key`."""
    further = list(
        queued_entries().filter(owner_id=owner_id, order_key__gt=key).values_list("id", "order_key")
    )
    return _positions_of_further(further)


def own_entries_past_head(*, owner_id: int, seq: int) -> list[dict[str, Any]] | None:
    """`owner_id`'s queued entries past the widest window's head, in full with positions,
    as of event `seq`; None if the queue is no longer at `seq`. With a window snapshot at
    `seq` (shared by every socket) they make that viewer's snapshot.

    No lock: the log's seq is read before and after, and every change that moves an
    entry appends an event in its transaction, so an unchanged seq means the reads in
    between saw the queue as of `seq`."""
    if current_seq() != seq:
        return None
    head_end = (
        queued_entries()
        .values_list("order_key", flat=True)[
            events.STAFF_HEAD_PLACES - 1 : events.STAFF_HEAD_PLACES
        ]
        .first()
    )
    positions = _positions_past(owner_id, head_end) if head_end is not None else {}
    rows = list(
        QueueEntry.objects.filter(pk__in=list(positions)).values(*ENTRY_COLUMNS, username_column())
    )
    if current_seq() != seq:
        return None
    line = estimates.place_estimates()
    result = [_payload_with_eta(row, positions[row["id"]], line) for row in rows]
    return sorted(result, key=lambda entry: entry["position"])


def own_entries_past_head_of(owner_ids: list[int], seq: int) -> dict[int, list | None]:
    """own_entries_past_head() for many owners at once: each owner's queued entries past
    the widest window's head as of event `seq` (full, with positions and ETAs; [] for
    most), or None for all when the queue is no longer at `seq`. For a burst of connecting
    sockets: a fixed handful of statements for all of them instead of several each, in
    plain SQL (their building in the ORM held daphne's loop: the database thread's Python
    holds the GIL).

    No lock, as own_entries_past_head: the log's seq is read before and after, and every
    change that moves an entry appends an event in its transaction."""
    if not owner_ids:
        return {}
    if current_seq() != seq:
        return dict.fromkeys(owner_ids)
    result: dict[int, list | None] = {owner: [] for owner in owner_ids}
    rows = sql.entry_rows(
        _behind_head_sql(len(owner_ids)),
        [
            *owner_ids,
            EntryStatus.QUEUED.value,
            EntryStatus.QUEUED.value,
            events.STAFF_HEAD_PLACES - 1,
        ],
        extra=("order_key",),
    )
    if rows:
        # One count ahead of the lowest key and the keys up to the highest, for everyone.
        places = positions_of_keys([row["order_key"] for row in rows])
        line = estimates.place_estimates(state=queue_state_now())
        for row in rows:
            payload = _payload_with_eta(row, places[row["order_key"]], line)
            result[row["owner_id"]].append(payload)
        for entries in result.values():
            entries.sort(key=lambda entry: entry["position"])
    if current_seq() != seq:
        return dict.fromkeys(owner_ids)
    return result


def _behind_head_sql(owners: int) -> str:
    """The rows (with order keys) of the queued entries of `owners` owners (%s each) behind
    the widest window's head (the line's key at place %s + 1); none while the line is no
    longer than the head. Which entries from the indexes alone, then rows by primary key,
    as in _window_sql."""
    entries = sql.table(QueueEntry)
    pk, status, key, owner = (
        sql.column(QueueEntry, name) for name in ("id", "status", "order_key", "owner")
    )
    return (
        f"{sql.entry_select(('order_key',))} WHERE e.{pk} IN (SELECT p.{pk} FROM {entries} p"
        f" WHERE p.{owner} IN ({', '.join(['%s'] * owners)}) AND p.{status} = %s"
        f" AND p.{key} > (SELECT l.{key} FROM {entries} l WHERE l.{status} = %s"
        f" ORDER BY l.{key} LIMIT 1 OFFSET %s))"
    )


def waiting_counts(seq: int) -> dict[int, int] | None:
    """How many entries each user has waiting, as of event `seq` (the counts fair share
    keeps, QueueOwner.waiting, one row per user with entries); None if the queue is no
    longer at `seq`. With a snapshot's head it tells whose entries go further back."""
    if current_seq() != seq:
        return None
    counts = dict(QueueOwner.objects.filter(waiting__gt=0).values_list("owner_id", "waiting"))
    if current_seq() != seq:
        return None
    return counts


def queue_snapshot(*, owner_id: int | None = None, places: int | None = None) -> dict[str, Any]:
    """The queue's window of `places` (by default the widest) in full, every entry
    unredacted, with `owner_id`'s entries if given, and the seq of the last event it
    includes. For viewers: snapshot_for_viewer()."""
    with transaction.atomic():
        state = locked_state()
        entries = window_entries(owner_id=owner_id, places=places, state=state)
    return snapshot_message(
        seq=state.last_seq,
        paused=state.paused,
        entries=entries,
        now=timezone.now(),
        queue_length=state.waiting + state.running + state.retrying,
        waiting=state.waiting,
    )


def queue_snapshot_for(user: Any) -> dict[str, Any]:
    """The queue as `user` may see it (their window: events.Viewer), with the seq of the
    last event it includes. Reads only that window's rows: a non-staff viewer's head is a
    tenth of staff's, and reading it is most of the cost."""
    viewer = Viewer.of(user)
    snapshot = queue_snapshot(owner_id=viewer.user_id, places=viewer.head_places)
    return snapshot_for_viewer(snapshot, viewer)


def line_page(*, user: Any, start: int, limit: int) -> dict[str, Any]:
    """Places `start` to `start + limit - 1` of the line, redacted for `user`, with the seq
    they are as of: how staff page past their window (protocol version 2). An index walk
    to `start`."""
    viewer = Viewer.of(user)
    with transaction.atomic():
        state = locked_state()
        ids = list(queued_entries().values_list("id", flat=True)[start - 1 : start - 1 + limit])
        rows = QueueEntry.objects.filter(pk__in=ids).values(*ENTRY_COLUMNS, username_column())
    place = {pk: position for position, pk in enumerate(ids, start=start)}
    line = estimates.place_estimates()
    results = [
        entry_for_viewer(_payload_with_eta(row, place[row["id"]], line), viewer) for row in rows
    ]
    results.sort(key=lambda entry: entry["position"])
    return {"seq": state.last_seq, "waiting": state.waiting, "start": start, "results": results}


def positions_of(entries: Iterable[QueueEntry]) -> dict[Any, int]:
    """The positions of the queued ones among `entries`, by id: positions_of_keys() of
    their order keys (a count and an index walk between them, not the whole line)."""
    queued = [entry for entry in entries if entry.status == EntryStatus.QUEUED]
    if not queued:
        return {}
    places = positions_of_keys([entry.order_key for entry in queued])
    return {entry.pk: places[entry.order_key] for entry in queued}


def positions_of_keys(keys: list[int]) -> dict[int, int]:
    """The positions that queued entries with these order keys have (or would have, for
    keys not in the line yet, counted as in it): one count of the line ahead of the
    lowest, and the keys between the lowest and the highest (plain SQL, built once: the
    hub's reads for connecting sockets use it)."""
    keys = sorted(set(keys))
    queued = EntryStatus.QUEUED.value
    [(ahead,)] = sql.rows("SELECT " + _queued_count_sql("<"), [queued, keys[0]])
    between = sql.rows(_keys_between_sql(), [queued, keys[0], keys[-1]])
    merged = sorted({*(key for (key,) in between), *keys})
    place = {key: index for index, key in enumerate(merged, start=1)}
    return {key: ahead + place[key] for key in keys}


@functools.cache
def _keys_between_sql() -> str:
    key = sql.column(QueueEntry, "order_key")
    return (
        f"SELECT {key} FROM {sql.table(QueueEntry)}"
        f" WHERE {sql.column(QueueEntry, 'status')} = %s AND {key} > %s AND {key} < %s"
    )


def events_after(*, seq: int, before: int | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Full event messages with seq > `seq` (and < `before`), oldest first."""
    logged = QueueEvent.objects.filter(seq__gt=seq)
    if before is not None:
        logged = logged.filter(seq__lt=before)
    return [event_message(event) for event in logged.order_by("seq")[:limit]]


def oldest_retained_seq() -> int | None:
    return QueueEvent.objects.order_by("seq").values_list("seq", flat=True).first()


# --- reads for the HTTP API ----------------------------------------------------------------


def entry_visible_to(*, user: Any, entry_id: UUID | str) -> QueueEntry | None:
    """The entry if `user` may act on it (its owner, or staff); None otherwise.

    A malformed id and someone else's entry both give None, so callers answer both
    with the same 404 and never reveal that an entry exists.
    """
    try:
        entry_id = UUID(str(entry_id))
    except ValueError:
        return None
    entries = QueueEntry.objects.select_related("meeting", "owner")
    if not user.is_staff:
        entries = entries.filter(owner_id=user.pk)
    return entries.filter(pk=entry_id).first()


def _payload_with_eta(
    row: dict[str, Any],
    position: int | None,
    line: estimates.LineEstimates | estimates.PlaceEstimates,
) -> dict[str, Any]:
    """entry_payload() plus `eta_seconds`, which snapshots and the API carry (not events):
    from queue_app.estimates (None while paused, or before any transfer completed)."""
    payload = entry_payload(row, position)
    payload["eta_seconds"] = line.done_in_row(row, position)
    return payload


def entry_detail_for(*, user: Any, entry: QueueEntry) -> dict[str, Any]:
    """One entry as `user` sees it (redacted unless owner or staff), with position and ETA
    (its position by one count, not the whole line's)."""
    [detail] = entries_detail_for(
        user=user, entries=[entry], positions={entry.pk: entry_position(entry)}
    )
    return detail


def entries_detail_for(
    *, user: Any, entries: list[QueueEntry], positions: dict[Any, int | None] | None = None
) -> list[dict[str, Any]]:
    """Entries as `user` sees them, with positions and ETAs, in a fixed number of queries
    whatever the line's length (a bulk of 2,000 would otherwise count the line 2,000
    times): the queued ones' positions from their keys (positions_of_keys), the ETAs by
    place (estimates.PlaceEstimates, as the windows carry them; GET /api/estimates plays
    the line forward for the viewer's own)."""
    if positions is None:
        positions = positions_of(entries)
    line = estimates.place_estimates()
    viewer = Viewer.of(user)
    return [
        entry_for_viewer(_payload_with_eta(entry_row(entry), positions.get(entry.pk), line), viewer)
        for entry in entries
    ]


def meeting_of(*, user: Any, meeting_id: int) -> Meeting | None:
    """The user's own meeting with this id, or None (also for someone else's meeting)."""
    return Meeting.objects.filter(owner_id=user.pk, pk=meeting_id).first()


# A meeting's state in the library, from its latest queue entry (none: not queued).
MEETING_STATES = ("not_queued", "waiting", "transferring", "transferred", "failed")
_STATE_OF_LATEST = {
    EntryStatus.QUEUED: "waiting",
    EntryStatus.RETRYING: "waiting",
    EntryStatus.RUNNING: "transferring",
    EntryStatus.COMPLETED: "transferred",
    EntryStatus.FAILED: "failed",
    EntryStatus.CANCELLED: "not_queued",
}


def meeting_teams(*, user: Any) -> list[str]:
    """The teams the user's meetings were recorded by, for the team filter."""
    teams = Meeting.objects.filter(owner_id=user.pk).exclude(team="").values_list("team", flat=True)
    return sorted({str(team) for team in teams.order_by().distinct() if team})


def meetings_of(
    *,
    user: Any,
    search: str | None = None,
    state: str | None = None,
    recorded_from: date | None = None,
    recorded_to: date | None = None,
    team: str | None = None,
) -> QuerySet[Meeting]:
    """The user's meetings, newest first, each annotated with its active entry's id and
    status (or None) and its latest entry's status; filtered by title (`search`), by
    state (MEETING_STATES), by the day recorded (inclusive) and by the recorder's team."""
    active = QueueEntry.objects.filter(meeting=OuterRef("pk"), status__in=ACTIVE_STATUSES)
    latest = QueueEntry.objects.filter(meeting=OuterRef("pk")).order_by("-created_at")
    meetings = Meeting.objects.filter(owner_id=user.pk).annotate(
        active_entry_id=Subquery(active.values("id")[:1]),
        active_entry_status=Subquery(active.values("status")[:1]),
        latest_entry_status=Subquery(latest.values("status")[:1]),
    )
    if search:
        meetings = meetings.filter(Q(title__icontains=search) | Q(meeting_title__icontains=search))
    if recorded_from is not None:
        meetings = meetings.filter(recording_start_time__date__gte=recorded_from)
    if recorded_to is not None:
        meetings = meetings.filter(recording_start_time__date__lte=recorded_to)
    if team is not None:
        meetings = meetings.filter(team=team)
    if state == "not_queued":
        meetings = meetings.filter(
            Q(latest_entry_status__isnull=True) | Q(latest_entry_status=EntryStatus.CANCELLED)
        )
    elif state is not None:
        statuses = [status for status, name in _STATE_OF_LATEST.items() if name == state]
        meetings = meetings.filter(latest_entry_status__in=statuses)
    return meetings


def meeting_state(latest_entry_status: str | None) -> str:
    """The library state (MEETING_STATES) of a meeting whose latest entry has this status."""
    return _STATE_OF_LATEST.get(latest_entry_status, "not_queued")


def events_for(*, user: Any, after: int, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` events with seq > `after`, oldest first, each redacted for `user`.

    Every event is returned (redacted or in full), so seq numbers stay contiguous and
    a client can tell a pruned gap from an empty one.
    """
    viewer = Viewer.of(user)
    return [event_for_viewer(message, viewer) for message in events_after(seq=after, limit=limit)]


# --- reads for the pages -------------------------------------------------------------------


def latest_entries_of(*, user: Any, meeting_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The latest entry of each of these meetings of the user's (meeting id -> the entry as
    the user sees it); meetings never queued are absent.

    The latest, not only an active one: the page offers retry for a failed transfer and
    the share link of a completed one.
    """
    latest: dict[int, QueueEntry] = {}
    entries = (
        QueueEntry.objects.filter(owner_id=user.pk, meeting_id__in=meeting_ids)
        .select_related("meeting", "owner")
        .order_by("meeting_id", "-created_at")
    )
    for entry in entries:
        latest.setdefault(entry.meeting_id, entry)
    if not latest:
        return {}
    positions = positions_of(latest.values())
    viewer = Viewer.of(user)
    return {
        meeting_id: entry_for_viewer(
            entry_payload(entry_row(entry), positions.get(entry.id)), viewer
        )
        for meeting_id, entry in latest.items()
    }


def meetings_page_for(
    *, user: Any, filters: dict[str, Any], page: int, page_size: int
) -> dict[str, Any]:
    """One page of the user's library (meetings_of with `filters`), each meeting with its
    latest entry, how many match in all, and the queue snapshot, read under the queue lock.

    Holding the lock for all the reads means they agree with one `seq`: the page connects
    with `?last_seq=<seq>` and the server replays exactly what changed since. A page past
    the last one gives the last.
    """
    with transaction.atomic():
        snapshot = queue_snapshot_for(user)  # takes the lock until this block ends
        matching = meetings_of(user=user, **filters)
        count = matching.count()
        pages = max(math.ceil(count / page_size), 1)
        page = min(max(page, 1), pages)
        meetings = list(matching[(page - 1) * page_size : page * page_size])
        latest = latest_entries_of(user=user, meeting_ids=[m.pk for m in meetings])
    return {
        "snapshot": snapshot,
        "meetings": [{"meeting": m, "entry": latest.get(m.pk)} for m in meetings],
        "count": count,
        "page": page,
        "pages": pages,
    }


def recent_failures(*, since: Any, limit: int = 20) -> list[TransferAttempt]:
    """Attempts that failed for good since `since`, newest first, with their entries.

    From the attempt history, so an entry retried since still shows its failure.
    """
    return list(
        TransferAttempt.objects.filter(outcome=AttemptOutcome.FAILED, finished_at__gte=since)
        .select_related("entry__meeting", "entry__owner")
        .order_by("-finished_at")[:limit]
    )


def attempts_of(entry: QueueEntry) -> list[dict[str, Any]]:
    """Every attempt of an entry, oldest first, as the API and the admin show them."""
    return [
        {
            "number": attempt.number,
            "worker": attempt.worker,
            "started_at": isoformat(attempt.started_at),
            "finished_at": isoformat(attempt.finished_at),
            "outcome": attempt.outcome,
            "error_kind": attempt.error_kind,
            "error": attempt.error,
            "bytes_moved": attempt.bytes_moved,
            "retry_after_seconds": attempt.retry_after_seconds,
        }
        for attempt in TransferAttempt.objects.filter(entry=entry).order_by("started_at", "id")
    ]


def queue_stats_since(*, since: Any) -> dict[str, Any]:
    """Throughput and waiting time over a window, for the staff monitor.

    `completed` and `failed` count transfers that finished in the window (from the attempt
    history: a failure retried since still counts); `mean_wait_seconds`
    averages, over transfers that started in it, the time from joining the line to starting
    (from created_at, as the admin's wait column does: entries have no queued_at), or None.
    """
    finished = TransferAttempt.objects.filter(finished_at__gte=since)
    completed = finished.filter(outcome=AttemptOutcome.COMPLETED).count()
    failed = finished.filter(outcome=AttemptOutcome.FAILED).count()
    started = QueueEntry.objects.filter(started_at__gte=since).values_list(
        "created_at", "started_at"
    )
    waits = [(begun - created).total_seconds() for created, begun in started]
    return {
        "completed": completed,
        "failed": failed,
        "mean_wait_seconds": round(sum(waits) / len(waits), 1) if waits else None,
        "since": isoformat(since),
    }


# --- reads for operators (manage.py queue) ---------------------------------------------------


def queue_counts() -> dict[str, int]:
    """How many entries are in each status (every status listed, 0 where none)."""
    counts = dict(
        QueueEntry.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    return {status: counts.get(status, 0) for status in EntryStatus.values}


def failed_entries(*, error_kind: str | None = None, owner: str | None = None) -> QuerySet:
    """Entries that failed for good, optionally by the error kind of their last attempt
    and by owner's username; oldest failure first."""
    entries = QueueEntry.objects.filter(status=EntryStatus.FAILED)
    if owner is not None:
        entries = entries.filter(**{username_column(): owner})
    if error_kind is not None:
        last_kind = TransferAttempt.objects.filter(entry=OuterRef("pk")).order_by(
            "-started_at", "-id"
        )
        entries = entries.annotate(
            last_error_kind=Subquery(last_kind.values("error_kind")[:1])
        ).filter(last_error_kind=error_kind)
    return entries.select_related("meeting", "owner").order_by("finished_at")


def waiting_entries(*, owner: str | None = None) -> QuerySet:
    """Entries waiting in line or to retry, optionally one owner's (by username)."""
    entries = QueueEntry.objects.filter(status__in=[EntryStatus.QUEUED, EntryStatus.RETRYING])
    if owner is not None:
        entries = entries.filter(**{username_column(): owner})
    return entries.select_related("meeting", "owner").order_by("order_key")


def failed_entries_page(
    *, owner: str | None, error_kind: str | None, offset: int, limit: int
) -> tuple[int, list[QueueEntry]]:
    """How many entries failed for good (by owner and last error kind, as the bulk retry
    selects them), and one page of them, newest failure first, each with
    `last_error_kind`."""
    last_kind = TransferAttempt.objects.filter(entry=OuterRef("pk")).order_by("-started_at", "-id")
    entries = failed_entries(owner=owner, error_kind=error_kind)
    if error_kind is None:
        entries = entries.annotate(last_error_kind=Subquery(last_kind.values("error_kind")[:1]))
    entries = entries.order_by("-finished_at", "-created_at")
    return entries.count(), list(entries[offset : offset + limit])
