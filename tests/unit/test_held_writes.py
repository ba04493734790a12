"""Writes held back under the queue lock (queue_app.sql.batched): on PostgreSQL they go to
the server with the next statement, and a change's last ones with its COMMIT; whatever
reads next sees them, an error drops them with the transaction, and a caller's own
transaction is never committed behind its back. On SQLite each write runs at once.
And the plain statements prepared once per connection (queue_app.sql._prepared)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from queue_app import sql
from queue_app.models import EntryStatus, QueueEntry, QueueEvent, QueueState
from queue_app.services import changes, line, transfers
from tests.helpers import record_commands

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="several statements a round trip: PostgreSQL's"
)

TABLE = sql.table(QueueState)
PAUSE_NOTE = sql.column(QueueState, "pause_note")


def note() -> str:
    return QueueState.objects.get(pk=1).pause_note


def hold_note(text: str) -> None:
    sql.write(f"UPDATE {TABLE} SET {PAUSE_NOTE} = %s WHERE id = 1", [text])


@pytest.fixture
def state(db) -> QueueState:
    return QueueState.objects.get_or_create(pk=1)[0]


@needs_postgresql
def test_a_held_write_goes_with_the_next_statement_which_sees_it(state, settings) -> None:
    settings.QUEUE_PREPARED_STATEMENTS = False  # to read the statements' text
    with transaction.atomic(), sql.batched():
        with CaptureQueriesContext(connection) as queries:
            hold_note("held 100%")  # a literal % in a parameter, too
            hold_note("held twice")
            assert len(queries) == 0  # nothing sent yet
            seen = note()  # an ORM read
        assert seen == "held twice"
        assert len(queries) == 1
        assert queries[0]["sql"].startswith(f"UPDATE {TABLE}")


@needs_postgresql
def test_a_statement_after_held_writes_keeps_its_own_result(state) -> None:
    QueueState.objects.filter(pk=1).update(pause_note="x")
    with transaction.atomic(), sql.batched():
        hold_note("y")
        # The update's row count and a read's rows are the caller's statement's, not the
        # held writes'.
        assert QueueState.objects.filter(pause_note="y").update(pause_note="z") == 1
        hold_note("w")
        assert list(QueueState.objects.values_list("pause_note", flat=True)) == ["w"]
        hold_note("v")
        assert sql.results([("SELECT 1", []), ("SELECT 2, 3", [])]) == [[(1,)], [(2, 3)]]
    assert note() == "v"


@needs_postgresql
def test_executemany_and_the_end_of_the_block_send_what_is_held(state) -> None:
    with transaction.atomic(), sql.batched():
        hold_note("before many")
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {TABLE} SET {PAUSE_NOTE} = {PAUSE_NOTE} || %s WHERE id = 1",
                [["-a"], ["-b"]],
            )
        hold_note("last")
        with CaptureQueriesContext(connection) as queries:
            pass
        assert note() == "last"
    assert not queries
    assert note() == "last"


def test_an_error_in_the_block_drops_the_held_writes_with_the_transaction(state) -> None:
    QueueState.objects.filter(pk=1).update(pause_note="kept")
    with pytest.raises(RuntimeError), transaction.atomic(), sql.batched():
        hold_note("dropped")
        raise RuntimeError
    assert note() == "kept"


def test_on_sqlite_a_write_runs_at_once(state) -> None:
    if connection.vendor == "postgresql":
        pytest.skip("SQLite's behaviour")
    with transaction.atomic(), sql.batched(), CaptureQueriesContext(connection) as queries:
        hold_note("now")
        assert len(queries) == 1


@needs_postgresql
def test_inside_a_callers_transaction_a_change_does_not_commit_it(
    alice, make_meeting, settings
) -> None:
    """The test's transaction is the caller's: the change must not send COMMIT."""
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    with CaptureQueriesContext(connection) as queries:
        line.entry_enqueue(meeting=make_meeting(alice))
    assert not any("COMMIT" in query["sql"] for query in queries)
    assert connection.connection.info.transaction_status != 0  # still in the test's


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_change_on_its_own_commits_with_its_last_writes_and_publishes_after(
    alice, make_meeting, settings, monkeypatch
) -> None:
    """Outside any transaction, a change's last round trip carries its COMMIT (a
    completion here: a claim is one statement on PostgreSQL, tests/unit/
    test_claim_function.py): the change is durable (another connection sees it), and the
    event is published after, once."""
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    published = []
    monkeypatch.setattr(changes.broadcast, "publish_event", published.append)
    entry = line.entry_enqueue(meeting=make_meeting(alice))
    assert [event.seq for event in published] == [QueueEvent.objects.get().seq]
    transfers.transfer_claim_next(worker="w")
    transfers.transfer_begin(entry_id=entry.pk, worker="w")
    commands = record_commands(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        completed = transfers.transfer_complete(entry_id=entry.pk, worker="w")
    assert completed.pk == entry.pk
    sent = [query["sql"] for query in queries]
    # BEGIN went with the first statement: psycopg sent none of its own, nor a COMMIT.
    # (Django logs the atomic block's start as "BEGIN"; psycopg would have sent it.)
    assert sent[0] == "BEGIN" and sent[1].startswith("BEGIN; "), sent
    assert commands == []
    assert connection.get_autocommit() and connection.connection.autocommit  # as before
    # The writes with COMMIT, then Django's commit(), which it logs as "COMMIT" and which
    # psycopg skips on a connection whose transaction has ended.
    assert sent[-2].endswith("; COMMIT") and sent[-1] == "COMMIT", sent
    assert sum("COMMIT" in statement for statement in sent) == 2
    assert len(published) == 3 and published[2].update_type == "task_completed"
    # Durable: read through a connection of its own.
    from django.db import connections

    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(
                f"SELECT {sql.column(QueueEntry, 'status')} FROM {sql.table(QueueEntry)}"
                " WHERE id = %s",
                [entry.pk],
            )
            assert cursor.fetchone()[0] == EntryStatus.COMPLETED
            cursor.execute(f"SELECT last_seq, running, waiting FROM {TABLE} WHERE id = 1")
            assert cursor.fetchone() == (published[2].seq, 0, 0)
    finally:
        other.close()


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_change_that_fails_at_its_last_write_leaves_nothing(
    alice, make_meeting, settings, monkeypatch
) -> None:
    """An error in the round trip that carries COMMIT (here the event's seq taken) rolls
    the whole change back and publishes nothing."""
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    published = []
    monkeypatch.setattr(changes.broadcast, "publish_event", published.append)
    line.entry_enqueue(meeting=make_meeting(alice))
    seq = QueueEvent.objects.get().seq
    QueueState.objects.filter(pk=1).update(last_seq=seq - 1)  # the next event reuses seq
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        transfers.transfer_claim_next(worker="w")
    assert QueueEntry.objects.get().status == EntryStatus.QUEUED
    assert QueueEvent.objects.count() == 1
    assert len(published) == 1
    assert not connection.in_atomic_block
    # The connection is usable, and the next change works once the state is right again.
    QueueState.objects.filter(pk=1).update(last_seq=seq)
    assert transfers.transfer_claim_next(worker="w") is not None


@pytest.mark.parametrize("behind", [0, 1, 3, 4, 8])
def test_a_claim_says_which_entries_it_brought_into_the_windows(
    alice, make_meeting, settings, monkeypatch, behind
) -> None:
    """The claim reads them with the lock and the head (on PostgreSQL, in that round trip):
    the entries one place behind each window, now at its last place, or none where nobody
    stood behind it."""
    from queue_app import events

    settings.QUEUE_DISPATCH_ON_COMMIT = False
    monkeypatch.setattr(events, "HEAD_PLACES", 2)
    monkeypatch.setattr(events, "STAFF_HEAD_PLACES", 5)
    line_of = [line.entry_enqueue(meeting=make_meeting(alice)) for _ in range(2 + behind)]
    transfers.transfer_claim_next(worker="w")
    window = QueueEvent.objects.latest("seq").window
    expected = [(line_of[2].pk, 2)] if behind >= 1 else []  # place 3, now 2
    if behind >= 4:
        expected.append((line_of[5].pk, 5))  # place 6, now 5
    assert [(entry["id"], entry["position"]) for entry in window["entered"]] == [
        (str(pk), place) for pk, place in expected
    ]


# --- prepared statements -----------------------------------------------------------------


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_statement_is_prepared_once_a_connection_and_then_run_by_name() -> None:
    QueueState.objects.update_or_create(pk=1, defaults={"pause_note": "50% done"})
    statement = f"SELECT {PAUSE_NOTE} FROM {TABLE} WHERE id = %s AND {PAUSE_NOTE} LIKE %s"
    with CaptureQueriesContext(connection) as first:
        assert sql.rows(statement, [1, "50%"]) == [("50% done",)]
    name = first[0]["sql"].split()[1]
    assert first[0]["sql"].startswith(f"PREPARE {name} AS SELECT")
    with CaptureQueriesContext(connection) as second:
        assert sql.rows(statement, [1, "50%"]) == [("50% done",)]
        assert sql.rows(statement, [2, "%"]) == []
    assert [query["sql"] for query in second] == [
        f"EXECUTE {name}(1, '50%')",
        f"EXECUTE {name}(2, '%')",
    ]
    # A new server session prepares it again.
    connection.close()
    with CaptureQueriesContext(connection) as third:
        assert sql.rows(statement, [1, "50%"]) == [("50% done",)]
    assert third[0]["sql"].startswith("PREPARE ")


@needs_postgresql
def test_a_session_handed_to_another_connection_keeps_its_prepared_statements(state) -> None:
    """A pool (DATABASE_POOL, under daphne) hands one server session to one thread's
    connection after another: what was prepared on it is run by name there, not
    prepared again (which the server refuses: the name exists)."""
    statement = f"SELECT {PAUSE_NOTE} FROM {TABLE} WHERE id = %s"
    assert sql.rows(statement, [1]) == [("",)]  # prepared on this session
    session = connection.connection
    ran: list = []

    def in_another_thread() -> None:
        from django.db import connections

        mine = connections["default"]
        mine.connection = session  # as the pool hands it on (this thread's own wrapper)
        try:
            with CaptureQueriesContext(mine) as queries:
                ran.append(sql.rows(statement, [1]))
            ran.append([query["sql"] for query in queries])
        except Exception as exc:  # seen below, in the test's thread
            ran.append(exc)
        finally:
            mine.connection = None  # the session stays the test's

    worker = threading.Thread(target=in_another_thread)
    worker.start()
    worker.join()
    assert ran[0] == [("",)], ran
    assert ran[1][0].startswith("EXECUTE "), ran


@needs_postgresql
def test_a_round_trip_that_failed_before_its_prepare_leaves_no_name_behind(state) -> None:
    """The PREPARE rides with an earlier statement that fails: the statement's next use
    prepares it afresh (a name thought prepared would fail on every later EXECUTE)."""
    statement = f"SELECT {PAUSE_NOTE} FROM {TABLE} WHERE id = %s"
    from django.db import DatabaseError

    with pytest.raises(DatabaseError), transaction.atomic(), sql.batched():
        sql.write("SELECT 1 / 0", [])
        sql.rows(statement, [1])
    assert sql.rows(statement, [1]) == [("",)]


@needs_postgresql
def test_a_value_is_bound_by_the_server(state) -> None:
    """sql.value() (a server function's one statement): the parameters travel apart from
    the text, not quoted into it; Django still logs the statement."""
    QueueState.objects.filter(pk=1).update(pause_note="50% done")
    statement = f"SELECT {PAUSE_NOTE} FROM {TABLE} WHERE id = %s AND {PAUSE_NOTE} LIKE %s"
    with CaptureQueriesContext(connection) as queries:
        assert sql.value(statement, [1, "50%"]) == "50% done"
    (logged,) = [query["sql"] for query in queries]
    assert logged == f"SELECT {PAUSE_NOTE} FROM {TABLE} WHERE id = $1 AND {PAUSE_NOTE} LIKE $2"


@needs_postgresql
def test_a_value_keeps_djangos_checks_and_errors_without_its_wrapper(state) -> None:
    """Unwatched, sql.value() runs without Django's cursor wrapper: its errors are still
    Django's, a transaction marked for rollback still refuses it, and its cursor serves
    the next statement after an error."""
    from django.db import DataError
    from django.db.transaction import TransactionManagementError

    with pytest.raises(DataError), transaction.atomic():
        sql.value("SELECT 1 / %s", [0])
    assert sql.value("SELECT %s::int + 1", [1]) == 2
    with pytest.raises(TransactionManagementError), transaction.atomic():
        transaction.set_rollback(True)
        sql.value("SELECT %s::int", [1])


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_value_after_the_connection_is_reopened() -> None:
    """A new server session gets a cursor of its own, and the closed one is not kept."""
    import gc
    import weakref

    assert sql.value("SELECT %s::text", ["one"]) == "one"
    closed = weakref.ref(connection.connection)
    connection.close()
    assert sql.value("SELECT %s::text", ["two"]) == "two"
    gc.collect()
    assert closed() is None


@needs_postgresql
def test_held_writes_go_before_a_value_bound_by_the_server(state) -> None:
    """A statement bound by the server is one statement: the held writes go in a round
    trip of their own before it, and it sees them."""
    statement = f"SELECT {PAUSE_NOTE} FROM {TABLE} WHERE id = %s"
    with transaction.atomic(), sql.batched():
        hold_note("held")
        with CaptureQueriesContext(connection) as queries:
            assert sql.value(statement, [1]) == "held"
    assert len(queries) == 2 and f"UPDATE {TABLE}" in queries[0]["sql"]
    assert queries[1]["sql"].startswith(f"SELECT {PAUSE_NOTE}")


@needs_postgresql
def test_held_writes_and_prepared_reads_of_every_kind_of_value(alice, make_meeting) -> None:
    """Timestamps, UUID arrays, JSON, booleans and NULL through PREPARE's inferred types:
    a whole enqueue, claim and completion, then again by name."""
    for _ in range(2):
        entry = line.entry_enqueue(meeting=make_meeting(alice))
        claimed = transfers.transfer_claim_next(worker="w")
        assert claimed.pk == entry.pk
        transfers.transfer_begin(entry_id=entry.pk, worker="w")
        transfers.transfer_complete(entry_id=entry.pk, worker="w", result_url="https://x.test/1")
        entry.refresh_from_db()
        assert entry.status == EntryStatus.COMPLETED
        assert entry.attempts == 1 and entry.started_at is not None
    events = list(QueueEvent.objects.order_by("seq").values_list("update_type", flat=True))
    assert events == ["meeting_added", "task_started", "task_completed"] * 2


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_change_that_fails_after_its_first_statement_leaves_nothing(state) -> None:
    """BEGIN goes with a change's first statement (psycopg in autocommit inside the
    block): a change that fails after statements have run is still one transaction,
    rolled back whole, and the connection is in autocommit and usable after."""
    with pytest.raises(RuntimeError), changes.queue_change():
        changes.lock_queue()
        hold_note("never")
        assert note() == "never"  # sent, with the read, inside the transaction
        raise RuntimeError("the change fails")
    assert connection.get_autocommit() and connection.connection.autocommit
    assert connection.connection.info.transaction_status == 0  # idle: rolled back
    assert note() == ""
    with changes.queue_change():
        changes.lock_queue()
        hold_note("kept")
    assert note() == "kept"
