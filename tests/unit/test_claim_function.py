"""The claim on PostgreSQL is queue_claim_next() (migration 0009), the server running the
whole change in one statement; the Python claim in services.transfers is its definition.
Each case here runs both on the same line (the Python one in a savepoint rolled back) and
holds them to the same rows, the same event (its payload and window to the byte, as
stored) and the same message published after commit."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from queue_app import broadcast, events, sql
from queue_app.models import (
    EntryStatus,
    Meeting,
    QueueEntry,
    QueueEvent,
    QueueState,
)
from queue_app.services import line, transfers
from tests.helpers import record_commands
from tests.queue_helpers import wait_to_retry
from tests.unit.queue_checks import assert_invariants
from tests.unit.server_changes import outcome

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL function"),
]

# A time with no microseconds: isoformat() leaves out ".000000", and so must the function.
NOW = datetime(2026, 12, 3, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _settings(settings, monkeypatch) -> None:
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    settings.QUEUE_CONCURRENCY = 10
    settings.QUEUE_ORDERING = "fair"
    # Small windows, so that a short line has entries behind both.
    monkeypatch.setattr(events, "HEAD_PLACES", 2)
    monkeypatch.setattr(events, "STAFF_HEAD_PLACES", 4)


@pytest.fixture
def published(monkeypatch) -> list[QueueEvent]:
    sent: list[QueueEvent] = []
    monkeypatch.setattr(broadcast, "publish_event", sent.append)  # both claims' publish
    return sent


def enqueue(owner, make_meeting, count: int, **fields) -> list[QueueEntry]:
    """`count` of `owner`'s meetings in line, their meetings' `fields` set first."""
    meetings = [make_meeting(owner) for _ in range(count)]
    if fields:
        Meeting.objects.filter(pk__in=[m.pk for m in meetings]).update(**fields)
    return line.entries_enqueue(owner=owner, meeting_ids=[m.pk for m in meetings]).entries


@pytest.fixture
def claim_both_ways(monkeypatch, published, django_capture_on_commit_callbacks):
    """claim_both_ways() -> the Python claim's outcome, rolled back, then the function's:
    the returned entry, the rows, the messages published on commit."""
    return lambda: _claim_both_ways(monkeypatch, published, django_capture_on_commit_callbacks)


def _claim_both_ways(monkeypatch, published: list[QueueEvent], on_commit) -> tuple[dict, dict]:
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    seq = QueueState.objects.get(pk=1).last_seq
    published.clear()
    with transaction.atomic():  # rolled back: the function claims from the same line
        with monkeypatch.context() as python_only:
            python_only.setattr(transfers, "_claim_by_the_server", lambda _: (False, None))
            with on_commit(execute=True):
                claimed = transfers.transfer_claim_next(worker="w1")
        python = outcome(claimed, published, seq)
        transaction.set_rollback(True)
    with on_commit(execute=True), CaptureQueriesContext(connection) as queries:
        server = transfers.transfer_claim_next(worker="w1")
    assert len(queries) == 1, [q["sql"] for q in queries]  # one statement, nothing else
    return python, outcome(server, published, seq)


def test_the_head_with_entries_moving_into_both_windows(
    alice, bob, make_meeting, claim_both_ways
) -> None:
    # Titles as entry_payload falls back: the meeting's title, then the recording's.
    enqueue(alice, make_meeting, 3, title="", meeting_title="Weekly sync")
    enqueue(bob, make_meeting, 3, title="", meeting_title="")
    python, server = claim_both_ways()
    assert server == python
    event = json.loads(server["rows"]["events"][0][8])
    assert [entry["position"] for entry in event["entered"]] == [2, 4]
    assert server["entry"]["status"] == EntryStatus.RUNNING
    assert_invariants()


def test_a_line_shorter_than_the_windows_moves_nobody_into_them(
    alice, make_meeting, claim_both_ways
) -> None:
    enqueue(alice, make_meeting, 2)
    python, server = claim_both_ways()
    assert server == python
    assert json.loads(server["rows"]["events"][0][8])["entered"] == []
    assert_invariants()


def test_fair_shares_round_moves_on_with_the_head(
    alice, bob, make_meeting, claim_both_ways
) -> None:
    enqueue(alice, make_meeting, 3)
    enqueue(bob, make_meeting, 1)
    transfers.transfer_claim_next(worker="w0")
    transfers.transfer_claim_next(worker="w0")  # into the second round
    python, server = claim_both_ways()
    assert server == python
    assert QueueState.objects.get(pk=1).head_round >= 1
    assert_invariants()


def test_a_due_retry_goes_before_the_line_and_one_not_due_does_not(
    alice, bob, make_meeting, claim_both_ways
) -> None:
    first, second = enqueue(alice, make_meeting, 2)
    for entry in (first, second):
        assert transfers.transfer_claim_next(worker="w0").pk == entry.pk
        transfers.transfer_begin(entry_id=entry.pk, worker="w0")
    wait_to_retry(entry_id=first.pk, worker="w0", error="timeout", delay_seconds=0)
    wait_to_retry(entry_id=second.pk, worker="w0", error="timeout", delay_seconds=3600)
    # Due at NOW: the first retry, claimed before the line's head.
    QueueEntry.objects.filter(pk=first.pk).update(next_attempt_at=NOW - timedelta(seconds=1))
    QueueEntry.objects.filter(pk=second.pk).update(next_attempt_at=NOW + timedelta(hours=1))
    enqueue(bob, make_meeting, 3)
    python, server = claim_both_ways()
    assert server == python
    assert server["entry"]["id"] == first.pk
    # The second retry is not due: the head of the line is claimed.
    python, server = claim_both_ways()
    assert server == python
    assert server["entry"]["id"] != second.pk
    assert server["entry"]["owner_id"] == bob.pk
    assert_invariants()


@pytest.mark.parametrize("why", ["paused", "full", "empty"])
def test_no_claim_changes_nothing(alice, make_meeting, claim_both_ways, settings, why) -> None:
    if why != "empty":
        enqueue(alice, make_meeting, 2)
    else:
        QueueState.objects.get_or_create(pk=1)
    if why == "paused":
        QueueState.objects.filter(pk=1).update(paused=True)
    if why == "full":
        settings.QUEUE_CONCURRENCY = 0
    python, server = claim_both_ways()
    assert server == python
    assert server["entry"] is None and server["rows"]["events"] == [] and not server["messages"]


def test_without_the_state_row_the_python_claim_makes_it(
    alice, make_meeting, published, django_capture_on_commit_callbacks
) -> None:
    """A flushed database has no state row: the function says so and the Python claim
    creates the row (counting the line) and claims."""
    (entry,) = enqueue(alice, make_meeting, 1)
    QueueState.objects.all().delete()
    QueueEvent.objects.all().delete()  # as a flush leaves the log
    with django_capture_on_commit_callbacks(execute=True):
        claimed = transfers.transfer_claim_next(worker="w1")
    assert claimed.pk == entry.pk
    assert QueueState.objects.get(pk=1).running == 1
    assert [event.update_type for event in published][-1] == "task_started"


@pytest.mark.django_db(transaction=True)
def test_on_its_own_a_claim_is_one_statement_durable_and_published_once(
    alice, make_meeting, published, monkeypatch
) -> None:
    """Outside any transaction the function's statement is its own transaction: one round
    trip, no BEGIN or COMMIT; the event is published once, after it."""
    (entry,) = enqueue(alice, make_meeting, 1)
    published.clear()
    commands = record_commands(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        claimed = transfers.transfer_claim_next(worker="w")
    assert claimed.pk == entry.pk and len(queries) == 1 and commands == []
    assert [event.update_type for event in published] == ["task_started"]
    from django.db import connections

    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(
                f"SELECT status, worker FROM {sql.table(QueueEntry)} WHERE id = %s", [entry.pk]
            )
            assert cursor.fetchone() == (EntryStatus.RUNNING, "w")
            cursor.execute(f"SELECT last_seq FROM {sql.table(QueueState)}")
            assert cursor.fetchone()[0] == published[0].seq
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_claim_waits_its_turn_behind_the_claimer_before_it(alice, make_meeting) -> None:
    """Claimers queue on an advisory lock before the queue lock (migration 0012), which
    PostgreSQL grants in order: a claim does not go ahead of the one holding the turn."""
    from django.db import OperationalError, connections

    key = importlib.import_module("queue_app.migrations.0012_claims_take_turns").CLAIM_TURN_KEY
    (entry,) = enqueue(alice, make_meeting, 1)
    other = connections.create_connection("default")
    try:
        other.ensure_connection()
        raw = other.connection
        raw.execute("BEGIN")
        raw.execute("SELECT pg_advisory_xact_lock(%s)", [key])  # a claim's turn, held
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '300ms'")
        with pytest.raises(OperationalError):  # waited, and was cancelled
            transfers.transfer_claim_next(worker="w")
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
        assert QueueEntry.objects.get(pk=entry.pk).status == EntryStatus.QUEUED
        raw.execute("COMMIT")  # the turn passes on
        assert transfers.transfer_claim_next(worker="w").pk == entry.pk
    finally:
        other.close()


def test_a_claim_plans_its_statements_once_and_keeps_its_commit_level(
    alice, make_meeting, settings
) -> None:
    """queue_claim_next() runs with generic plans (migration 0013): its setting is part of
    its definition, which a later CREATE OR REPLACE would have to carry on. The clause
    restores that setting alone on return: the commit level the function set for its
    transaction is still the transaction's."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT proconfig FROM pg_proc WHERE proname = 'queue_claim_next'")
        assert cursor.fetchone()[0] == ["plan_cache_mode=force_generic_plan"]
    settings.QUEUE_SYNCHRONOUS_COMMIT = "off"
    (entry,) = enqueue(alice, make_meeting, 1)
    with transaction.atomic():
        assert transfers.transfer_claim_next(worker="w").pk == entry.pk
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "off"
            cursor.execute("SHOW plan_cache_mode")
            assert cursor.fetchone()[0] == "auto"  # the session's own, as before the call
