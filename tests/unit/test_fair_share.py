"""Fair share (QUEUE_ORDERING=fair, the default): the line goes round by owner, and the
write path's cost does not grow with the line (docs/architecture.md, "The order of the line")."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from queue_app import events, selectors
from queue_app.models import QueueEntry, QueueEvent
from queue_app.services import line, transfers
from tests.unit.queue_checks import assert_invariants, line_ids

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings(settings) -> None:
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    settings.QUEUE_CONCURRENCY = 10
    settings.QUEUE_ORDERING = "fair"


@pytest.fixture
def carol(make_user):
    return make_user("carol")


@pytest.fixture
def dave(make_user):
    return make_user("dave")


def bulk(owner, make_meeting, count: int) -> list[str]:
    meetings = [make_meeting(owner) for _ in range(count)]
    result = line.entries_enqueue(owner=owner, meeting_ids=[m.pk for m in meetings])
    assert not result.refused
    return [str(entry.pk) for entry in result.entries]


def one(owner, make_meeting) -> str:
    return str(line.entry_enqueue(meeting=make_meeting(owner)).pk)


def position(entry_id: str) -> int | None:
    return selectors.entry_position(QueueEntry.objects.get(pk=entry_id))


def test_each_users_kth_entry_is_ahead_of_every_users_next(alice, bob, carol, make_meeting) -> None:
    a = bulk(alice, make_meeting, 4)
    b = bulk(bob, make_meeting, 2)
    c = one(carol, make_meeting)
    # Round 1: everyone's first, in arrival order; then round 2, 3, 4.
    assert line_ids() == [a[0], b[0], c, a[1], b[1], a[2], a[3]]
    assert [position(pk) for pk in line_ids()] == list(range(1, 8))
    assert_invariants()


def test_a_bulk_pushes_anothers_first_meeting_back_at_most_one_place(
    alice, bob, carol, dave, make_meeting
) -> None:
    b = one(bob, make_meeting)
    c = one(carol, make_meeting)
    a = bulk(alice, make_meeting, 300)
    # Alice's 300 went behind Bob's and Carol's single meetings, all but her first
    # behind Dave's too, who comes after her bulk: one place for each person waiting.
    assert (position(b), position(c), position(a[0])) == (1, 2, 3)
    d = one(dave, make_meeting)
    assert position(d) == 4
    assert line_ids()[:5] == [b, c, a[0], d, a[1]]
    assert line_ids()[5:] == a[2:]
    assert_invariants()


def test_the_round_moves_on_as_the_head_is_taken(alice, bob, carol, make_meeting) -> None:
    a = bulk(alice, make_meeting, 3)
    b = one(bob, make_meeting)
    assert line_ids() == [a[0], b, a[1], a[2]]
    assert transfers.transfer_claim_next(worker="w").pk == QueueEntry.objects.get(pk=a[0]).pk
    assert str(transfers.transfer_claim_next(worker="w").pk) == b
    # Alice's second is the head now, in round 2: Carol's first joins that round, after it.
    c = one(carol, make_meeting)
    assert line_ids() == [a[1], c, a[2]]
    # Bob has none waiting: his next joins the current round too, not round 2 of his own.
    b2 = one(bob, make_meeting)
    assert line_ids() == [a[1], c, b2, a[2]]
    assert_invariants()


def test_a_cancel_leaves_the_others_where_they_are(alice, bob, carol, make_meeting) -> None:
    a = bulk(alice, make_meeting, 3)
    b = bulk(bob, make_meeting, 3)
    assert line_ids() == [a[0], b[0], a[1], b[1], a[2], b[2]]
    line.entry_cancel(entry_id=a[0])
    assert line_ids() == [b[0], a[1], b[1], a[2], b[2]]
    c = one(carol, make_meeting)
    assert line_ids() == [b[0], c, a[1], b[1], a[2], b[2]]
    assert_invariants()


def test_a_staff_move_pins_the_entry_where_staff_put_it(
    alice, bob, carol, dave, make_meeting
) -> None:
    a = bulk(alice, make_meeting, 4)
    b = one(bob, make_meeting)
    assert line_ids() == [a[0], b, a[1], a[2], a[3]]
    line.entry_move(entry_id=a[3], position=2)
    assert line_ids() == [a[0], a[3], b, a[1], a[2]]
    # Put behind Alice's first, it counts as the latest arrival of that round: Carol's
    # first, in the same round, joins behind it.
    c = one(carol, make_meeting)
    assert line_ids() == [a[0], a[3], b, c, a[1], a[2]]
    line.entry_move(entry_id=a[2], position="top")
    d = one(dave, make_meeting)
    assert line_ids() == [a[2], a[0], a[3], b, c, d, a[1]]
    line.entry_move(entry_id=b, position="bottom")
    assert line_ids() == [a[2], a[0], a[3], c, d, a[1], b]
    # Bob's next takes his second round (a pinned entry keeps the round it was given),
    # ahead of his pinned one. Alice's fifth takes her fifth round, behind everything.
    b2 = one(bob, make_meeting)
    e = one(alice, make_meeting)
    assert line_ids() == [a[2], a[0], a[3], c, d, a[1], b2, b, e]
    assert_invariants()


def test_a_retried_entry_takes_its_owners_next_round(alice, bob, make_meeting) -> None:
    a = bulk(alice, make_meeting, 2)
    b = bulk(bob, make_meeting, 2)
    line.entry_cancel(entry_id=b[0])
    line.entry_retry(entry_id=b[0])
    # Bob has one waiting (his round 2): the retried one goes to his round 3.
    assert line_ids() == [a[0], a[1], b[1], b[0]]
    assert_invariants()


def test_fifo_is_first_come_first_served(alice, bob, make_meeting, settings) -> None:
    settings.QUEUE_ORDERING = "fifo"
    a = bulk(alice, make_meeting, 3)
    b = one(bob, make_meeting)
    assert line_ids() == [*a, b]
    assert position(b) == 4
    assert_invariants()


def entry_queries(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize("ordering_rule", ["fair", "fifo"])
def test_writes_cost_the_same_whatever_the_length_of_the_line(
    alice, bob, make_meeting, settings, ordering_rule, monkeypatch
) -> None:
    """Each change runs the same statements at a depth of 10 and of 60, none of them a
    count of the line but the positions it reports (an index-backed count each)."""
    settings.QUEUE_ORDERING = ordering_rule
    settings.QUEUE_PREPARED_STATEMENTS = False  # to read the statements' text
    # Both depths reach past the windows, so both read the entries that move up into them.
    monkeypatch.setattr(events, "HEAD_PLACES", 2)
    monkeypatch.setattr(events, "STAFF_HEAD_PLACES", 4)

    def costs() -> dict[str, list[str]]:
        done = {}
        with CaptureQueriesContext(connection) as queries:
            entry = line.entry_enqueue(meeting=make_meeting(bob))
        done["enqueue"] = entry_queries(queries)
        with CaptureQueriesContext(connection) as queries:
            claimed = transfers.transfer_claim_next(worker="w")
        done["claim"] = entry_queries(queries)
        transfers.transfer_begin(entry_id=claimed.pk, worker="w")
        with CaptureQueriesContext(connection) as queries:
            transfers.transfer_complete(entry_id=claimed.pk, worker="w")
        done["complete"] = entry_queries(queries)
        with CaptureQueriesContext(connection) as queries:
            line.entry_cancel(entry_id=entry.pk)
        done["cancel"] = entry_queries(queries)
        return done

    bulk(alice, make_meeting, 10)
    short = costs()
    bulk(alice, make_meeting, 50)
    long = costs()
    for change, statements in short.items():
        assert len(long[change]) == len(statements), (change, long[change])
    for change in ("claim", "complete"):
        assert not any("COUNT(" in sql.upper() for sql in long[change]), long[change]
    # And how many (savepoints aside). On SQLite, a statement each. An enqueue (after the
    # meeting's own insert here): the lock, the owner with the meeting's check, the
    # owner's counters read, the head's key (fair share's current round; not in fifo
    # order), the counters written, the insert, its position, the state, the event. A
    # claim: the lock, the head (SKIP LOCKED), the update, the owner's counter, the
    # attempt, the state, the entries that moved up into the windows (their places' ids,
    # then their rows), the event. A completion: the lock, the entry, its update, the
    # attempt, the state, the owner's history, the event (which carries it). A cancel: the
    # lock, the entry, its position, its update, the owner's counter, the attempt, the
    # state, the owner's history, the entries that moved up (two; none in fifo order: the
    # cancelled entry was at the back), the event.
    # On PostgreSQL, round trips: the writes go with the next statement (sql.batched); an
    # enqueue is one statement, queue_enqueue(), and a claim one, queue_claim_next() (the
    # server runs the whole change: tests/unit/test_enqueue_function.py and
    # test_claim_function.py). (COMMIT goes with the last one
    # outside a test's transaction: tests/unit/test_held_writes.py.)
    counts = {
        change: sum(1 for sql in statements if "SAVEPOINT" not in sql)
        for change, statements in long.items()
    }
    fair = ordering_rule == "fair"
    if connection.vendor == "postgresql":
        expected = {"enqueue": 1 + 1, "claim": 1, "complete": 5, "cancel": 6 + fair}
    else:
        expected = {"enqueue": 9 + fair, "claim": 9, "complete": 7, "cancel": 9 + 2 * fair}
    assert counts == expected, long
    assert_invariants()


@pytest.mark.parametrize("ordering", ["fair", "fifo"])
@pytest.mark.parametrize("by_the_server", [False, True], ids=["python", "server"])
def test_a_joining_entrys_position_is_the_count_from_the_front(
    alice, bob, carol, dave, make_meeting, settings, monkeypatch, ordering, by_the_server
) -> None:
    """An enqueue counts from the nearer end of the line (its round tells which): at the
    front for a new owner's first, from the back for a library's next and in fifo order.
    Either way the event's position is the true one, whatever pins staff made: by the
    Python enqueue (which ends it counts are seen here), and by queue_enqueue() on
    PostgreSQL (held to the Python one: tests/unit/test_enqueue_function.py)."""
    if by_the_server and connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL function")
    if not by_the_server:
        monkeypatch.setattr(line, "_enqueue_by_the_server", lambda *_: None)
    settings.QUEUE_ORDERING = ordering
    bulk(alice, make_meeting, 6)
    bulk(bob, make_meeting, 3)
    pinned = one(carol, make_meeting)
    line.entry_move(entry_id=pinned, position="bottom")  # a key past the last round
    counted = []
    real_behind = selectors.queued_behind
    monkeypatch.setattr(
        selectors, "queued_behind", lambda key: counted.append(key) or real_behind(key)
    )
    for owner in (dave, alice, bob, dave, alice):
        entry = line.entry_enqueue(meeting=make_meeting(owner))
        event = events.event_message(QueueEvent.objects.order_by("-seq").first())
        assert event["global_position"] == position(str(entry.pk))
        assert [e["position"] for e in event["queue"]] == [position(str(entry.pk))]
    # From the back: every one in fifo order; Alice's (her 7th and 8th) in fair share.
    assert len(counted) == (0 if by_the_server else 5 if ordering == "fifo" else 2)
    assert_invariants()
