"""What every queue change shares. Each change that clients see is one transaction that
1. locks the QueueState row (so writers are serialised and `seq` follows commit order),
2. changes entry rows (by a transition of queue_app.transitions),
3. appends exactly one QueueEvent, numbered from QueueState.last_seq,
4. publishes the event with transaction.on_commit (queue_app.broadcast), so nobody hears
   of a state the database does not hold (but for a crash of PostgreSQL right after an
   asynchronous commit: docs/architecture.md, "Asynchronous commit").
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from queue_app import broadcast, events, selectors, sql
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
# Meeting fields no change reads (kilobytes each): left out of what changes load.
_UNREAD_MEETING_FIELDS = ("meeting__raw", "meeting__summary", "meeting__transcript")
# The QueueState fields a change may move, saved with each event.
STATE_COUNTERS = ("waiting", "running", "retrying", "next_arrival", "top_round", "head_round")


@contextmanager
def queue_change() -> Iterator[None]:
    """The transaction of a change, with its BEGIN going with its first statement and
    its writes held back to go to the server with its next statement, the last of them
    with COMMIT (sql.batched): on PostgreSQL an enqueue is three round trips, where each
    statement was one (bench/notes.md, "Round trips under the lock"). (A claim is one
    statement there: transfers.transfer_claim_next.)"""
    with transaction.atomic(), sql.batched(commit=True):
        yield


def lock_queue() -> QueueState:
    """Take the queue lock: the singleton state row, FOR UPDATE; and, on PostgreSQL, set
    this transaction's synchronous_commit (QUEUE_SYNCHRONOUS_COMMIT, `off` by default) in
    the same statement.

    The lock is held until COMMIT, and a synchronous COMMIT waits for the WAL's flush
    (0.2-4.5 ms on the benchmark machine's disk, as much as a change's statements):
    asynchronous, the lock goes once the commit record is in the WAL buffers. What a
    crash can lose then: docs/architecture.md, "Asynchronous commit".

    A data migration creates the row; a test database flush removes it, so the first
    change after one creates it again.
    """
    state = _locked_state()
    if state is None:
        _, created = QueueState.objects.get_or_create(pk=1)
        state = _locked_state()
        if created:  # rows may be there already (written around the services): count them
            ordering.recount(state)
    return state


def lock_queue_reading(
    statements: list[tuple[str, list[Any]]],
) -> tuple[QueueState, list[list[tuple[Any, ...]]]]:
    """lock_queue(), then `statements` (reads, plain SQL) under the lock: each one's rows.
    In the same round trip on PostgreSQL, where each statement runs once the lock is held,
    on a snapshot of its own (READ COMMITTED)."""
    if connection.vendor == "postgresql":
        locked, *found = sql.results([_lock_statement(), *statements])
        if locked:
            return _state_from(locked[0]), found
    state = lock_queue()  # and the state row made again after a flush
    return state, sql.results(statements) if statements else []


def lock_queue_reading_head() -> tuple[QueueState, QueueEntry | None, dict[int, dict[str, Any]]]:
    """lock_queue(), the head of the line locked for a claim (claim_candidate of the
    queued entries), and the entries that taking it brings into the windows: by their
    place once the head is gone, as record's `entered_rows` takes them. In one round trip
    on PostgreSQL (lock_queue_reading), where the event's read of the windows was a round
    trip of its own under the lock; nothing read ahead on SQLite.

    A claim that takes a retrying entry instead leaves the head locked until it commits,
    which nobody waits for (every other change takes the queue lock first), and moves no
    place, so what was read ahead goes unused."""
    if connection.vendor != "postgresql":
        state = lock_queue()
        head = claim_candidate(EntryStatus.QUEUED, ("order_key",)) if state.waiting else None
        return state, head, {}
    head_sql, loads = _candidate_sql(("order_key",), False)
    # The first place behind each window now: the window's last once the head is taken.
    ranges = [(places + 1, places + 1) for places in (events.HEAD_PLACES, events.STAFF_HEAD_PLACES)]
    state, (head, behind) = lock_queue_reading(
        [(head_sql, [EntryStatus.QUEUED.value]), _rows_at_statement(ranges)]
    )
    ahead = {place - 1: row for place, row in _placed(ranges, behind)}
    return state, _candidate_from(head, loads), ahead


def _locked_state() -> QueueState | None:
    """The state row FOR UPDATE. On PostgreSQL in plain SQL, since every change runs it
    under the lock and the ORM took ~5 times the round trip to build it; with
    set_config(..., is_local => true), SET LOCAL as an expression (no round trip of its
    own), which lasts until the transaction ends."""
    if connection.vendor != "postgresql":
        return QueueState.objects.select_for_update().filter(pk=1).first()
    found = sql.rows(*_lock_statement())
    return _state_from(found[0]) if found else None


def _lock_statement() -> tuple[str, list[Any]]:
    level = settings.QUEUE_SYNCHRONOUS_COMMIT
    return _lock_sql(level != "on"), [level] if level != "on" else []


@functools.cache
def _lock_sql(set_commit_level: bool) -> str:
    columns = ", ".join(sql.quoted(field.column) for field in QueueState._meta.concrete_fields)
    setting = ", set_config('synchronous_commit', %s, true)" if set_commit_level else ""
    return (
        f"SELECT {columns}{setting} FROM {sql.table(QueueState)}"
        f" WHERE {sql.quoted(QueueState._meta.pk.column)} = 1 FOR UPDATE"
    )


def _state_from(row: tuple[Any, ...]) -> QueueState:
    fields = QueueState._meta.concrete_fields
    return QueueState.from_db(
        connection.alias, [field.attname for field in fields], row[: len(fields)]
    )


def _save_state(state: QueueState) -> None:
    """Save the counts and `last_seq` (plain SQL on PostgreSQL, as _locked_state; held
    back in a batched() change)."""
    names = [*STATE_COUNTERS, "last_seq", "updated_at"]
    if connection.vendor != "postgresql":
        state.save(update_fields=names)
        return
    state.updated_at = timezone.now()
    sql.write(_save_state_sql(), [*(getattr(state, name) for name in names), state.pk])


@functools.cache
def _save_state_sql() -> str:
    names = [*STATE_COUNTERS, "last_seq", "updated_at"]
    assignments = ", ".join(f"{sql.column(QueueState, name)} = %s" for name in names)
    return (
        f"UPDATE {sql.table(QueueState)} SET {assignments}"
        f" WHERE {sql.quoted(QueueState._meta.pk.column)} = %s"
    )


def with_people(entries: QuerySet[QueueEntry]) -> QuerySet[QueueEntry]:
    """`entries` with their meeting and owner, as events and the owners' history read
    them: in the same statement, without the meeting's description, summary and
    transcript (kilobytes each, and read under the queue lock)."""
    return entries.select_related("meeting", "owner").defer(*_UNREAD_MEETING_FIELDS)


def claim_candidate(
    status: str, order: tuple[str, ...], due_by: datetime | None = None
) -> QueueEntry | None:
    """The first entry in `status` by `order` (and with next_attempt_at <= `due_by`, when
    given) that no other transaction holds, locked (SKIP LOCKED), with its meeting and
    owner as with_people loads them. Plain SQL on PostgreSQL: a claim runs it under the
    queue lock, and the ORM took ~2 ms of a loaded core to build it, four times its
    round trip."""
    if connection.vendor != "postgresql":
        rows = with_people(QueueEntry.objects.select_for_update(skip_locked=True, of=("self",)))
        rows = rows.filter(status=status)
        if due_by is not None:
            rows = rows.filter(next_attempt_at__lte=due_by)
        return rows.order_by(*order).first()
    statement, loads = _candidate_sql(order, due_by is not None)
    params = [str(status)] if due_by is None else [str(status), due_by]  # the value, not the enum
    return _candidate_from(sql.rows(statement, params), loads)


def _candidate_from(
    found: list[tuple[Any, ...]], loads: list[tuple[Any, list]]
) -> QueueEntry | None:
    """The entry, with its meeting and owner attached, from _candidate_sql's row."""
    if not found:
        return None
    objects, start = [], 0
    for model, names in loads:
        objects.append(model.from_db(connection.alias, names, found[0][start : start + len(names)]))
        start += len(names)
    entry, meeting, owner = objects
    QueueEntry.meeting.field.set_cached_value(entry, meeting)
    QueueEntry.owner.field.set_cached_value(entry, owner)
    return entry


@functools.cache
def _candidate_sql(order: tuple[str, ...], due: bool) -> tuple[str, list[tuple[Any, list]]]:
    qn, entry = connection.ops.quote_name, QueueEntry._meta
    unread = {name.split("__")[1] for name in _UNREAD_MEETING_FIELDS}
    loads, columns, joins = [], [], []
    for relation, alias in (("", "e"), ("meeting", "m"), ("owner", "u")):
        model = QueueEntry if not relation else entry.get_field(relation).related_model
        fields = [
            f for f in model._meta.concrete_fields if f.name not in unread or relation != "meeting"
        ]
        loads.append((model, [f.attname for f in fields]))
        columns += [f"{alias}.{qn(f.column)}" for f in fields]
        if relation:
            joins.append(
                f" JOIN {qn(model._meta.db_table)} {alias} ON {alias}.{qn(model._meta.pk.column)}"
                f" = e.{qn(entry.get_field(relation).column)}"
            )
    where = f"e.{qn(entry.get_field('status').column)} = %s"
    if due:
        where += f" AND e.{qn(entry.get_field('next_attempt_at').column)} <= %s"
    order_by = ", ".join(f"e.{qn(entry.get_field(name).column)}" for name in order)
    sql = (
        f"SELECT {', '.join(columns)} FROM {qn(entry.db_table)} e{''.join(joins)}"
        f" WHERE {where} ORDER BY {order_by} LIMIT 1 FOR UPDATE OF e SKIP LOCKED"
    )
    return sql, loads


def locked_entry(entry_id: UUID | str) -> QueueEntry:
    try:
        return with_people(QueueEntry.objects.select_for_update(of=("self",))).get(pk=entry_id)
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
    entered_rows: Mapping[int, dict[str, Any]] | None = None,
) -> QueueEvent:
    """Append the one event for this change, save the state's counts (which the caller
    has kept: services.ordering) and publish the event after commit.

    `before`: each entry's status and position before the change (`was`); entries not in
    it are new. `positions`: the entries' positions by id when the caller knows them;
    otherwise each queued entry's position is one index-backed count
    (selectors.entry_position). From both the event says which places moved, and which
    entries entered the head of the line (protocol version 2, events.event_for_viewer).
    `note`, `actor`: staff's word on the change and who made it, for the owners' history
    (services.activity, which stores every outcome with the change). `entered_rows`: the
    rows that entered the windows by their place after the change, when the caller read
    them ahead (lock_queue_reading_head); the places it lacks are read here.
    """
    entries = list(entries)
    before = before or {}
    state.last_seq += 1
    _save_state(state)
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
    at = timezone.now()
    payload = [entry_payload(entry_row(entry), now_at[entry.pk]) for entry in entries]
    # The owners' history first: the event carries its rows' ids (one INSERT of the event).
    activity.record_outcomes(
        update_type=update_type,
        seq=state.last_seq,
        at=at,
        global_position=global_position,
        entries=entries,
        payload=payload,
        note=note,
        actor=actor,
    )
    event = QueueEvent(
        seq=state.last_seq,
        update_type=update_type,
        entry=entries[0] if len(entries) == 1 else None,
        affected_user_id=owners.pop() if len(owners) == 1 else None,
        global_position=global_position,
        queue_length=ordering.length(state),
        paused=state.paused,
        payload=payload,
        window={
            "before": [list(before.get(entry.pk, (None, None))) for entry in entries],
            "moved": moved,
            "entered": _entered(state, moved, {entry.pk for entry in entries}, entered_rows or {}),
            "waiting": state.waiting,
        },
        created_at=at,
    )
    sql.insert([event])
    transaction.on_commit(lambda: broadcast.publish_event(event))
    return event


def _entered(
    state: QueueState,
    moved: dict[str, Any],
    changed: set[Any],
    known: Mapping[int, dict[str, Any]],
) -> list[dict]:
    """The entries the change did not touch that moved up into the head of the line, for
    each window size (events.HEAD_PLACES, STAFF_HEAD_PLACES): at most a window's worth,
    from `known` (rows by place, read ahead) or else read by _rows_at; nothing at all
    when no place ahead of a window's end was freed."""
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
    places = _places(ranges)
    if all(place in known for place in places):
        found = [(place, known[place]) for place in places]
    else:
        found = _rows_at(ranges)
    entered = [entry_payload(row, place) for place, row in found if row["id"] not in changed]
    return sorted(entered, key=lambda entry: entry["position"])


def _rows_at(ranges: list[tuple[int, int]]) -> list[tuple[int, dict[str, Any]]]:
    """The entries at the places of `ranges` ((first, last), in the line's order, not
    overlapping), each with its place, as entry_payload reads them. On PostgreSQL one
    statement: the ids by a walk of the (status, order_key) index per range, gathered
    into an array first (an InitPlan), then the rows by primary key. (A join on the
    walks, or an IN, let the planner, not knowing they pick a few rows, hash the whole
    meetings table: ~4 ms a claim at 10,000 waiting.)"""
    if connection.vendor == "postgresql":
        return _placed(ranges, sql.rows(*_rows_at_statement(ranges)))
    places = set(_places(ranges))
    low, high = ranges[0][0], ranges[-1][1]
    ids = list(selectors.queued_entries().values_list("id", flat=True)[low - 1 : high])
    at = {pk: place for place, pk in enumerate(ids, start=low) if place in places}
    names = [*ENTRY_COLUMNS, username_column()]
    rows = QueueEntry.objects.filter(pk__in=list(at)).values(*names)
    return sorted(((at[row["id"]], row) for row in rows), key=lambda pair: pair[0])


def _rows_at_statement(ranges: list[tuple[int, int]]) -> tuple[str, list[Any]]:
    """_rows_at's statement on PostgreSQL, for a caller to run (sql.results)."""
    params: list[Any] = []
    for first, last in ranges:
        params += [EntryStatus.QUEUED.value, last - first + 1, first - 1]
    return _rows_at_sql(len(ranges)), params


def _placed(
    ranges: list[tuple[int, int]], found: list[tuple[Any, ...]]
) -> list[tuple[int, dict[str, Any]]]:
    """_rows_at_statement's rows, each with its place (fewer places where the line ends)."""
    rows = sql.entry_dicts(found, extra=("order_key",))
    rows.sort(key=lambda row: row["order_key"])
    return list(zip(_places(ranges), rows, strict=False))


def _places(ranges: list[tuple[int, int]]) -> list[int]:
    """Every place of `ranges` ((first, last), in order)."""
    return [place for first, last in ranges for place in range(first, last + 1)]


@functools.cache
def _rows_at_sql(count: int) -> str:
    walk = (
        f"(SELECT {sql.column(QueueEntry, 'id')} FROM {sql.table(QueueEntry)}"
        f" WHERE {sql.column(QueueEntry, 'status')} = %s"
        f" ORDER BY {sql.column(QueueEntry, 'order_key')} LIMIT %s OFFSET %s)"
    )
    walks = " UNION ALL ".join([walk] * count)
    select = sql.entry_select(("order_key",))
    return f"{select} WHERE e.{sql.column(QueueEntry, 'id')} = ANY(ARRAY({walks}))"


def run_by_the_server(statement: str, params: list[Any]) -> dict[str, Any]:
    """A change a PostgreSQL function runs whole (queue_claim_next, queue_enqueue): its
    one statement (outside a transaction, its own: no BEGIN or COMMIT of psycopg's), the
    function's answer as a dict. Bound by the server (sql.value)."""
    found = sql.value(statement, params)
    return json.loads(found) if isinstance(found, str) else found


def entry_from_json(columns: dict[str, Any]) -> QueueEntry:
    """An entry from its row as to_jsonb() gives it (columns by name, values as JSON)."""
    fields = QueueEntry._meta.concrete_fields
    return QueueEntry.from_db(
        connection.alias,
        [field.attname for field in fields],
        [field.to_python(columns[field.column]) for field in fields],
    )


def publish_told(
    told: dict[str, Any], update_type: str, entry: QueueEntry, at: datetime
) -> QueueEvent:
    """The event a server function logged for `entry` (its `event` as the function built
    it), published after commit as record() publishes its own."""
    event = QueueEvent(
        seq=told["seq"],
        update_type=update_type,
        entry_id=entry.pk,
        affected_user_id=entry.owner_id,
        global_position=told["global_position"],
        queue_length=told["queue_length"],
        paused=told["paused"],
        payload=told["payload"],
        window=told["window"],
        created_at=at,
    )
    transaction.on_commit(lambda: broadcast.publish_event(event))
    return event


# One dispatch asked for at a time. A burst of changes (single enqueues one after another)
# asked for a dispatch each: a task sent per change (~1-3 ms of the change's caller), and
# as many dispatch tasks, each taking the queue lock to find the slots full. The flag is
# set by the change that asks and cleared by the dispatcher as it starts, before it
# claims: a change committed while a dispatch asked for has not started is seen by that
# dispatch's claims, and one committed after it started asks again. It expires by itself
# should the task be lost (the beat tick dispatches anyway).
DISPATCH_ASKED_KEY = "queue:dispatch-asked"
DISPATCH_ASKED_SECONDS = 30


def request_dispatch() -> None:
    """After commit, ask the dispatcher to hand out work: something became claimable."""
    if not settings.QUEUE_DISPATCH_ON_COMMIT:
        return

    def send() -> None:
        if not _first_to_ask():
            return  # a dispatch asked for has not started yet: it will claim this too
        try:
            current_app.send_task(DISPATCH_TASK)
        except Exception:  # the beat tick dispatches anyway; a broker hiccup must not 500
            dispatch_started()  # not sent: the next change asks again
            logger.warning("could not request a dispatch; the next beat tick will do it")

    transaction.on_commit(send)


def dispatch_started() -> None:
    """The dispatcher starts handing out work: changes committed from now on ask for the
    next dispatch (see DISPATCH_ASKED_KEY)."""
    try:
        cache.delete(DISPATCH_ASKED_KEY)
    except Exception:  # the cache is down: every change asks (_first_to_ask)
        logger.warning("could not clear the dispatch flag; the cache is unreachable")


def _first_to_ask() -> bool:
    """Whether this change is the one to send the dispatch: True unless one is asked for
    and not started, and True when the cache cannot tell."""
    try:
        return bool(cache.add(DISPATCH_ASKED_KEY, 1, DISPATCH_ASKED_SECONDS))
    except Exception:
        return True


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
