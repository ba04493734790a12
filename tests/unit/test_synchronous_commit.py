"""QUEUE_SYNCHRONOUS_COMMIT: the queue's changes commit asynchronously on PostgreSQL by
default (services.changes.lock_queue), and synchronously when configured; nothing else
changes, and SQLite has no such setting (docs/architecture.md, "Asynchronous commit")."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from queue_app.services import line
from queue_app.services.changes import lock_queue

pytestmark = pytest.mark.django_db


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="synchronous_commit is PostgreSQL's"
)


@needs_postgresql
def test_a_queue_change_commits_asynchronously_by_default(alice, make_meeting, settings) -> None:
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    assert settings.QUEUE_SYNCHRONOUS_COMMIT == "off"
    assert synchronous_commit() == "on"  # the server's, before any change
    with transaction.atomic():
        line.entry_enqueue(meeting=make_meeting(alice))
        # SET LOCAL: for this transaction (the test's, around the service's savepoint).
        assert synchronous_commit() == "off"


@needs_postgresql
def test_it_is_set_for_the_transaction_only(settings) -> None:
    with transaction.atomic(savepoint=False):
        sid = transaction.savepoint()
        lock_queue()
        assert synchronous_commit() == "off"
        transaction.savepoint_rollback(sid)  # as a transaction's end would
    assert synchronous_commit() == "on"


@needs_postgresql
@pytest.mark.parametrize("level", ["on", "local"])
def test_a_configured_level_is_the_transactions(level, settings) -> None:
    settings.QUEUE_SYNCHRONOUS_COMMIT = level
    with transaction.atomic():
        lock_queue()
        assert synchronous_commit() == level


@needs_postgresql
def test_it_costs_no_statement_of_its_own(settings) -> None:
    """set_config() rides in the lock's SELECT ... FOR UPDATE."""
    settings.QUEUE_PREPARED_STATEMENTS = False  # to read it
    lock_queue_statements = {}
    for level in ("on", "off"):
        settings.QUEUE_SYNCHRONOUS_COMMIT = level
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            lock_queue()
        lock_queue_statements[level] = [q["sql"] for q in queries.captured_queries]
    assert len(lock_queue_statements["off"]) == len(lock_queue_statements["on"])
    assert "set_config" in lock_queue_statements["off"][-1]
    assert "set_config" not in lock_queue_statements["on"][-1]


def test_sqlite_or_not_a_change_works_whatever_the_level(alice, make_meeting, settings) -> None:
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    for level in ("off", "on"):
        settings.QUEUE_SYNCHRONOUS_COMMIT = level
        line.entry_enqueue(meeting=make_meeting(alice))


def test_a_published_event_and_its_logged_copy_carry_the_same_timestamp(
    alice, make_meeting, settings, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    """The hub tells a reused seq (a crash lost the tail of the log) from an event it
    fetched from the log and then receives published by the timestamp: the published
    message and the stored event must agree to the microsecond, or every catch-up
    would look like the log going back (realtime/hub.py, DELIVERED_TIMESTAMPS)."""
    from queue_app import broadcast
    from queue_app.events import event_message
    from queue_app.models import QueueEvent

    settings.QUEUE_DISPATCH_ON_COMMIT = False
    published: list[dict] = []
    monkeypatch.setattr(broadcast.publisher, "publish_queue_event", published.append)
    with django_capture_on_commit_callbacks(execute=True):
        line.entry_enqueue(meeting=make_meeting(alice))
    (message,) = published
    logged = event_message(QueueEvent.objects.get(seq=message["seq"]))
    assert logged["timestamp"] == message["timestamp"]
    assert logged == message
