"""Where entries stand in the line: the ordering key, fair share's rounds, and the counts
the queue state keeps so that no change counts or scans the line.

An entry's `order_key` is `(round << ROUND_SHIFT) + arrival * KEY_GAP`: lower goes first,
so the line is ordered by round, then by arrival within a round. Arrival numbers come
from `QueueState.next_arrival`, one per entry joining the line. Rounds (docs/architecture.md,
"The order of the line"):
- `QUEUE_ORDERING=fair` (the default): an entry joining the line takes its owner's next
  round (the one after their newest waiting entry), or the current round (`head_round`,
  the round of the latest entry taken from the head) if they have none waiting, and never
  a round before the current one. So each user's k-th waiting entry goes ahead of every
  user's (k+1)-th, in arrival order within a round; one person's bulk puts at most one of
  theirs ahead of another's first entry.
- `QUEUE_ORDERING=fifo`: every entry takes `top_round`, the highest round given so far,
  so each joins behind everything (first come, first served).
A staff move takes a key between its new neighbours (it stays pinned there); a worker
that died puts its entry back with a key ahead of the head.

Every function here runs under the queue lock (services.changes.lock_queue) and changes
the QueueState it is given in memory; `changes.record` saves it with the event.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Max

from queue_app import selectors, sql
from queue_app.models import EntryStatus, QueueEntry, QueueOwner, QueueState

# Room between neighbouring order keys. Each move into a gap takes its midpoint, halving
# it, so 16 moves into the same gap fit before the line is renumbered (tests/unit/test_ordering).
KEY_GAP = 1 << 16
# Bits of the key below the round: 2**28 arrival numbers of KEY_GAP each (then the keys
# are given out afresh, `renumber`), and rounds up to 2**19 in a signed 64-bit key.
ROUND_SHIFT = 44
MAX_ARRIVAL = (1 << ROUND_SHIFT) // KEY_GAP - 1
COUNTED = (EntryStatus.QUEUED, EntryStatus.RUNNING, EntryStatus.RETRYING)


def round_of(key: int) -> int:
    return key >> ROUND_SHIFT


def make_key(round_: int, arrival: int) -> int:
    return (round_ << ROUND_SHIFT) + arrival * KEY_GAP


def is_fair() -> bool:
    return settings.QUEUE_ORDERING == "fair"


# --- the counts ------------------------------------------------------------------------------


def count(state: QueueState, status: str, by: int) -> None:
    """Add `by` (may be negative) to the state's count of entries in `status`."""
    if status == EntryStatus.QUEUED:
        state.waiting += by
    elif status == EntryStatus.RUNNING:
        state.running += by
    elif status == EntryStatus.RETRYING:
        state.retrying += by


def moved(state: QueueState, entries: Iterable[QueueEntry], before: Iterable[str]) -> None:
    """Count `entries` as having gone from the statuses `before` (in order) to their own,
    and their owners' waiting entries with them (one statement per owner whose count
    changed)."""
    owners: dict[Any, int] = {}
    for entry, old in zip(entries, before, strict=True):
        count(state, old, -1)
        count(state, entry.status, +1)
        change = (entry.status == EntryStatus.QUEUED) - (old == EntryStatus.QUEUED)
        if change:
            owners[entry.owner_id] = owners.get(entry.owner_id, 0) + change
    for owner_id, change in owners.items():
        if change < 0:
            sql.write(
                f"UPDATE {_OWNERS} SET {_WAITING} = {_WAITING} + %s WHERE {_OWNER} = %s",
                [change, owner_id],
            )
        else:  # a requeued entry's owner may have no row yet (made before the counters)
            row, _ = QueueOwner.objects.get_or_create(pk=owner_id)
            QueueOwner.objects.filter(pk=row.pk).update(waiting=F("waiting") + change)


def line_cleared(state: QueueState) -> None:
    """Nobody has an entry waiting any more (queue_clear)."""
    state.waiting = 0
    state.retrying = 0
    QueueOwner.objects.filter(waiting__gt=0).update(waiting=0)


def length(state: QueueState) -> int:
    """Active entries: what events and snapshots call the queue's length."""
    return state.waiting + state.running + state.retrying


def position_on_joining(state: QueueState, entry: QueueEntry) -> int:
    """The position of an entry that has just joined the line (its key given and counted
    in `state.waiting`), counted from the nearer end of the line as its round tells: an
    entry joins at the back of its round, so a new owner's first entry (the current
    round) counts the few ahead of it, and one in the last round (a library's next; in
    fifo order every one, all in one round) the few behind it, however long the line."""
    round_ = round_of(entry.order_key)
    if not is_fair() or state.top_round - round_ < round_ - state.head_round:
        return state.waiting - selectors.queued_behind(entry.order_key)
    return selectors.entry_position(entry)


# --- keys for entries joining the line --------------------------------------------------------


def key_reads(owner_ids: list[Any]) -> list[tuple[str, list[Any]]]:
    """The statements assign_keys reads (for a caller that sends them along with the lock:
    changes.lock_queue_reading): the owners' counters, and the head's key in fair order."""
    reads = [
        (
            f"SELECT {_OWNER}, {_WAITING}, {_LAST_ROUND} FROM {_OWNERS}"
            f" WHERE {_OWNER} IN ({', '.join(['%s'] * len(owner_ids))})",
            list(owner_ids),
        )
    ]
    if is_fair():
        reads.append((_HEAD_KEY_SQL, [EntryStatus.QUEUED.value]))
    return reads


def assign_keys(
    state: QueueState, entries: list[QueueEntry], read: list[list[tuple]] | None = None
) -> None:
    """Give each entry (about to be queued, in the order given) its order key, and count it
    as waiting. Two round trips whatever the number of entries or owners: key_reads()'s
    statements (`read`: their rows, if the caller ran them), then the counters written."""
    if state.next_arrival + len(entries) > MAX_ARRIVAL:
        renumber(state)
    owner_ids = list({entry.owner_id for entry in entries})
    if read is None:
        read = sql.results(key_reads(owner_ids))
    owners = {
        owner_id: QueueOwner(owner_id=owner_id, waiting=waiting, last_round=last_round)
        for owner_id, waiting, last_round in read[0]
    }
    for owner_id in set(owner_ids) - set(owners):
        owners[owner_id] = QueueOwner(owner_id=owner_id)
    fair = is_fair()
    if fair and read[1]:
        # The current round: the head's, unless staff pinned an entry of an earlier round
        # at the head (one indexed read); never back (head_round only grows).
        state.head_round = max(state.head_round, round_of(read[1][0][0]))
    for entry in entries:
        owner = owners[entry.owner_id]
        if fair:
            round_ = (
                max(state.head_round, owner.last_round + 1) if owner.waiting else state.head_round
            )
        else:
            round_ = state.top_round
        entry.order_key = make_key(round_, state.next_arrival)
        state.next_arrival += 1
        state.top_round = max(state.top_round, round_)
        owner.last_round = round_ if fair else max(owner.last_round, round_)
        owner.waiting += 1
    state.waiting += len(entries)
    rows = [(owner.owner_id, owner.waiting, owner.last_round) for owner in owners.values()]
    sql.write(
        f"INSERT INTO {_OWNERS} ({_OWNER}, {_WAITING}, {_LAST_ROUND})"
        f" VALUES {', '.join(['(%s, %s, %s)'] * len(rows))}"
        f" ON CONFLICT ({_OWNER}) DO UPDATE"
        f" SET {_WAITING} = EXCLUDED.{_WAITING}, {_LAST_ROUND} = EXCLUDED.{_LAST_ROUND}",
        [value for row in rows for value in row],
    )


def back_key(state: QueueState) -> int:
    """A key behind every queued entry (a move to the bottom): a fresh arrival in the top
    round. Takes an arrival number, so no later entry gets the same key."""
    if state.next_arrival + 1 > MAX_ARRIVAL:
        renumber(state)
    key = make_key(state.top_round, state.next_arrival)
    state.next_arrival += 1
    return key


def _head_key() -> int | None:
    rows = sql.rows(_HEAD_KEY_SQL, [EntryStatus.QUEUED.value])
    return rows[0][0] if rows else None


# The names of what every enqueue and claim reads and writes under the queue lock, for
# plain SQL (queue_app.sql).
_OWNERS = sql.table(QueueOwner)
_OWNER = sql.column(QueueOwner, "owner")
_WAITING = sql.column(QueueOwner, "waiting")
_LAST_ROUND = sql.column(QueueOwner, "last_round")
_ENTRIES = sql.table(QueueEntry)
_STATUS = sql.column(QueueEntry, "status")
_ORDER_KEY = sql.column(QueueEntry, "order_key")
_HEAD_KEY_SQL = (
    f"SELECT {_ORDER_KEY} FROM {_ENTRIES} WHERE {_STATUS} = %s ORDER BY {_ORDER_KEY} LIMIT 1"
)


def front_key() -> int:
    """A key ahead of every queued entry: one gap before the head (one indexed read), so
    in the head's round, before its first arrival."""
    first = _head_key()
    return (first if first is not None else 0) - KEY_GAP


def taken_from_head(state: QueueState, entry: QueueEntry) -> None:
    """A queued entry was claimed: its round is fair share's current round now."""
    state.head_round = max(state.head_round, round_of(entry.order_key))


def key_for_position(state: QueueState, entry: QueueEntry, position: int) -> int | None:
    """A key that puts `entry` at `position` among the others, or None if there is no room.
    Reads the two neighbours by an index walk to `position` (a staff move).

    The key is in the round of the entry before it, below the key the next arrival in that
    round would get: so the moved entry counts as that round's latest arrival, and entries
    joining later in that round or after go behind it (it stays pinned where staff put it).
    """
    others = (
        QueueEntry.objects.filter(status=EntryStatus.QUEUED)
        .exclude(pk=entry.pk)
        .order_by("order_key")
        .values_list("order_key", flat=True)
    )
    neighbours = [None, *others[:1]] if position == 1 else list(others[position - 2 : position])
    before = neighbours[0]
    after = neighbours[1] if len(neighbours) > 1 else None
    if before is None:
        return after - KEY_GAP if after is not None else KEY_GAP
    if after is None:
        return before + KEY_GAP
    after = min(after, make_key(round_of(before), state.next_arrival))
    if after - before < 2:
        return None
    return (before + after) // 2


def renumber(state: QueueState) -> None:
    """Spread the line's keys out again, in the same order and each in its round, and
    restart the arrival numbers. Rare: when two neighbours have no room between them
    (16 moves into one gap), or after 2**28 arrivals. A pass over the line."""
    queued = QueueEntry.objects.filter(status=EntryStatus.QUEUED).order_by("order_key")
    changed = []
    for index, entry in enumerate(queued.only("id", "order_key"), start=1):
        entry.order_key = make_key(round_of(entry.order_key), index)
        changed.append(entry)
    QueueEntry.objects.bulk_update(changed, ["order_key"], batch_size=1000)
    state.next_arrival = len(changed) + 1


# --- from the rows (migrations, fixtures that write rows directly, an operator's repair) ---


def recount(state: QueueState) -> None:
    """Set the state's counts and the owners' counters from the rows (a pass over the line,
    never part of a change: for a new state row, and for data written around the services)."""
    counts = dict(
        QueueEntry.objects.filter(status__in=COUNTED)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    state.waiting = counts.get(EntryStatus.QUEUED, 0)
    state.running = counts.get(EntryStatus.RUNNING, 0)
    state.retrying = counts.get(EntryStatus.RETRYING, 0)
    keys = QueueEntry.objects.aggregate(
        high=Max("order_key"), arrival=Max(F("order_key") % (1 << ROUND_SHIFT))
    )
    if keys["high"] is not None:
        state.top_round = max(state.top_round, round_of(keys["high"]))
        state.next_arrival = max(state.next_arrival, keys["arrival"] // KEY_GAP + 1)
    head = (
        QueueEntry.objects.filter(status=EntryStatus.QUEUED)
        .order_by("order_key")
        .values_list("order_key", flat=True)
        .first()
    )
    if head is not None:
        state.head_round = round_of(head)
    owners = list(
        QueueEntry.objects.filter(status=EntryStatus.QUEUED)
        .values_list("owner_id")
        .annotate(n=Count("id"), top=Max("order_key"))
        .values_list("owner_id", "n", "top")
    )
    QueueOwner.objects.exclude(pk__in=[owner_id for owner_id, _, _ in owners]).update(waiting=0)
    QueueOwner.objects.bulk_create(
        [
            QueueOwner(owner_id=owner_id, waiting=n, last_round=round_of(top))
            for owner_id, n, top in owners
        ],
        update_conflicts=True,
        unique_fields=["owner"],
        update_fields=["waiting", "last_round"],
    )
    state.save()
