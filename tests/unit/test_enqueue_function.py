"""The enqueue on PostgreSQL is queue_enqueue() (migration 0011), the server running the
whole change in one statement; the Python enqueue in services.line is its definition.
Each case here runs both on the same line (the Python one in a savepoint rolled back) and
holds them to the same rows, the same event (its payload and window to the byte, as
stored), the same message published after commit and the same entry returned."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from queue_app import broadcast, sql
from queue_app.errors import AlreadyQueued
from queue_app.models import EntryStatus, Meeting, QueueEntry, QueueEvent, QueueState
from queue_app.services import line, ordering, transfers
from tests.helpers import record_commands
from tests.unit.queue_checks import assert_invariants
from tests.unit.server_changes import outcome, stored

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL function"),
]

# A time with no microseconds: isoformat() leaves out ".000000", and so must the function.
NOW = datetime(2026, 12, 3, 9, 0, 0, tzinfo=UTC)
# The new entry's id, the same both ways (the model's default and the function's argument).
NEW_ID = uuid.UUID("7e57c0de-0000-4000-8000-000000000001")


@pytest.fixture(autouse=True)
def _settings(settings) -> None:
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    settings.QUEUE_CONCURRENCY = 10
    settings.QUEUE_ORDERING = "fair"


@pytest.fixture
def published(monkeypatch) -> list[QueueEvent]:
    sent: list[QueueEvent] = []
    monkeypatch.setattr(broadcast, "publish_event", sent.append)  # both enqueues' publish
    return sent


def enqueue(owner, make_meeting, count: int) -> list[QueueEntry]:
    """`count` of `owner`'s meetings in line, one enqueue each."""
    return [line.entry_enqueue(meeting=make_meeting(owner)) for _ in range(count)]


@pytest.fixture
def enqueue_both_ways(monkeypatch, published, django_capture_on_commit_callbacks):
    """enqueue_both_ways(meeting, **kwargs) -> the Python enqueue's outcome, rolled back,
    then the function's: the returned entry, the rows, the messages published on commit
    (for a refused meeting, the exception instead of the entry)."""
    return lambda meeting, **kwargs: _enqueue_both_ways(
        monkeypatch, published, django_capture_on_commit_callbacks, meeting, kwargs
    )


def _enqueue_both_ways(monkeypatch, published, on_commit, meeting, kwargs) -> tuple[dict, dict]:
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    monkeypatch.setattr(uuid, "uuid4", lambda: NEW_ID)
    monkeypatch.setattr(QueueEntry._meta.pk, "_get_default", lambda: NEW_ID)
    seq = QueueState.objects.get(pk=1).last_seq
    published.clear()

    def attempt() -> QueueEntry | type[Exception]:
        try:
            with on_commit(execute=True):
                return line.entry_enqueue(meeting=meeting, **kwargs)
        except AlreadyQueued:
            return AlreadyQueued

    with transaction.atomic():  # rolled back: the function enqueues into the same line
        with monkeypatch.context() as python_only:
            python_only.setattr(line, "_enqueue_by_the_server", lambda *_: None)
            python = _outcome(attempt(), published, seq)
        transaction.set_rollback(True)
    with CaptureQueriesContext(connection) as queries:
        entry = attempt()
    server = _outcome(entry, published, seq)
    # One statement (in the test's transaction, in a savepoint of its own).
    ran = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert len(ran) == 1, ran
    return python, server


def _outcome(entry, published, seq) -> dict:
    if entry is AlreadyQueued:
        return {"refused": True, "rows": stored(seq), "messages": published[:]}
    return {
        **outcome(entry, published, seq),
        "owner": (entry.owner.pk, entry.owner.username),
        "meeting": entry.meeting,
    }


def test_a_first_entry_into_an_empty_line(alice, make_meeting, enqueue_both_ways) -> None:
    QueueState.objects.get_or_create(pk=1)
    meeting = make_meeting(alice)
    Meeting.objects.filter(pk=meeting.pk).update(title="", meeting_title="Weekly sync")
    meeting.refresh_from_db()
    python, server = enqueue_both_ways(meeting, max_attempts=3)
    assert server == python
    assert server["entry"]["id"] == NEW_ID and server["entry"]["max_attempts"] == 3
    assert server["rows"]["events"][0][4] == 1  # position 1
    assert server["owner"] == (alice.pk, "alice") and server["meeting"] is meeting
    assert_invariants()


def test_an_owner_with_entries_waiting_joins_at_their_next_round(
    alice, bob, make_meeting, enqueue_both_ways
) -> None:
    enqueue(alice, make_meeting, 3)
    enqueue(bob, make_meeting, 2)
    python, server = enqueue_both_ways(make_meeting(alice))
    assert server == python
    assert server["rows"]["events"][0][4] == 6  # alice's 4th: round 3, behind everyone
    assert_invariants()


def test_a_new_owner_joins_the_current_round(
    alice, bob, make_user, make_meeting, enqueue_both_ways
) -> None:
    """Counted from the front: the newcomer goes behind the current round's few."""
    enqueue(alice, make_meeting, 4)
    enqueue(bob, make_meeting, 4)
    python, server = enqueue_both_ways(make_meeting(make_user("carol")))
    assert server == python
    assert server["rows"]["events"][0][4] == 3  # alice's 1st, bob's 1st, then carol's
    assert_invariants()


def test_the_round_moves_on_with_the_head(alice, bob, make_meeting, enqueue_both_ways) -> None:
    enqueue(alice, make_meeting, 3)
    enqueue(bob, make_meeting, 1)
    for _ in range(3):  # into alice's third round
        transfers.transfer_claim_next(worker="w0")
    python, server = enqueue_both_ways(make_meeting(bob))
    assert server == python
    assert QueueState.objects.get(pk=1).head_round == 2
    assert_invariants()


def test_a_head_staff_pinned_in_an_earlier_round(
    alice, bob, make_meeting, enqueue_both_ways
) -> None:
    """The current round is read from the head's key: staff may move an entry of a later
    round to the front."""
    enqueue(alice, make_meeting, 3)
    last = enqueue(bob, make_meeting, 2)[-1]
    line.entry_move(entry_id=last.pk, position=1)
    python, server = enqueue_both_ways(make_meeting(alice))
    assert server == python
    assert_invariants()


def test_first_come_first_served(alice, bob, settings, make_meeting, enqueue_both_ways) -> None:
    settings.QUEUE_ORDERING = "fifo"
    enqueue(alice, make_meeting, 2)
    enqueue(bob, make_meeting, 1)
    python, server = enqueue_both_ways(make_meeting(bob))
    assert server == python
    assert server["rows"]["events"][0][4] == 4
    assert_invariants()


def test_into_a_paused_queue(alice, make_meeting, enqueue_both_ways) -> None:
    enqueue(alice, make_meeting, 1)
    line.queue_pause()
    python, server = enqueue_both_ways(make_meeting(alice))
    assert server == python
    assert server["rows"]["events"][0][6] is True  # the event says the queue is paused
    assert_invariants()


def test_a_meeting_in_the_line_is_refused_and_nothing_changes(
    alice, make_meeting, enqueue_both_ways
) -> None:
    (entry,) = enqueue(alice, make_meeting, 1)
    transfers.transfer_claim_next(worker="w0")  # running is in the line too
    before = stored(QueueState.objects.get(pk=1).last_seq)
    python, server = enqueue_both_ways(entry.meeting)
    assert server == python
    assert server["refused"] and server["rows"] == before and server["messages"] == []


@pytest.mark.parametrize("by_the_server", [True, False], ids=["server", "python"])
def test_in_a_callers_transaction_an_error_of_the_function_leaves_it_usable(
    alice, make_meeting, monkeypatch, by_the_server
) -> None:
    """The statement runs in a savepoint of its own there, as the Python change's block
    does: an error in it (here a constraint the caller broke, told as it is by both, not
    as "already queued") rolls back its work alone, and the caller's transaction goes on."""
    from django.db import IntegrityError

    if not by_the_server:
        monkeypatch.setattr(line, "_enqueue_by_the_server", lambda *_: None)
    (entry,) = enqueue(alice, make_meeting, 1)
    meeting = make_meeting(alice)
    with transaction.atomic():
        with pytest.raises(IntegrityError, match="max_attempts"):
            line.entry_enqueue(meeting=meeting, max_attempts=-1)
        assert QueueEntry.objects.filter(meeting=meeting).count() == 0
        again = line.entry_enqueue(meeting=meeting)  # the transaction is usable
    assert again.order_key > entry.order_key
    assert_invariants()


def test_without_the_state_row_the_python_enqueue_makes_it(
    alice, make_meeting, published, django_capture_on_commit_callbacks
) -> None:
    """A flushed database has no state row: the function says so and the Python enqueue
    creates the row (counting the line) and enqueues."""
    enqueue(alice, make_meeting, 1)
    QueueState.objects.all().delete()
    QueueEvent.objects.all().delete()  # as a flush leaves the log
    with django_capture_on_commit_callbacks(execute=True):
        entry = line.entry_enqueue(meeting=make_meeting(alice))
    state = QueueState.objects.get(pk=1)
    assert state.waiting == 2 and entry.status == EntryStatus.QUEUED
    assert [event.update_type for event in published][-1] == "meeting_added"
    assert_invariants()


def test_when_the_arrival_numbers_run_out_the_python_enqueue_renumbers(alice, make_meeting) -> None:
    enqueue(alice, make_meeting, 2)
    QueueState.objects.filter(pk=1).update(next_arrival=ordering.MAX_ARRIVAL)
    with CaptureQueriesContext(connection) as queries:
        entry = line.entry_enqueue(meeting=make_meeting(alice))
    assert len(queries) > 1  # the function declined: the Python enqueue ran
    keys = list(QueueEntry.objects.order_by("order_key").values_list("order_key", flat=True))
    assert [key % (1 << ordering.ROUND_SHIFT) // ordering.KEY_GAP for key in keys] == [1, 2, 3]
    assert keys[-1] == entry.order_key
    assert QueueState.objects.get(pk=1).next_arrival == 4
    assert_invariants()


@pytest.mark.django_db(transaction=True)
def test_on_its_own_an_enqueue_is_one_statement_durable_and_published_once(
    alice, make_meeting, published, monkeypatch
) -> None:
    """Outside any transaction the function's statement is its own transaction: one round
    trip, no BEGIN or COMMIT; the event is published once, after it."""
    enqueue(alice, make_meeting, 1)
    published.clear()
    meeting = make_meeting(alice)
    commands = record_commands(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        entry = line.entry_enqueue(meeting=meeting)
    assert len(queries) == 1 and commands == []
    assert [(event.update_type, event.seq) for event in published] == [("meeting_added", 2)]
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(
                f"SELECT status, order_key FROM {sql.table(QueueEntry)} WHERE id = %s", [entry.pk]
            )
            assert cursor.fetchone() == (EntryStatus.QUEUED, entry.order_key)
            cursor.execute(f"SELECT last_seq, waiting FROM {sql.table(QueueState)}")
            assert cursor.fetchone() == (2, 2)
    finally:
        other.close()
