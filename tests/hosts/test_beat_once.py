"""A second beat is harmless: each periodic task runs at most once per tick, whoever sends it.

Two runs of the periodic wrapper at the same moment (as two beats' messages taken by two
worker processes would be) on the real Redis and database: one does the work, the other
skips without touching the queue.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

import queue_app.tasks  # noqa: F401 - registers the tasks, as a worker does when it starts
from fathomloom.celery import PERIODIC_LOCK_PREFIX, app, periodic
from queue_app.models import EntryStatus, QueueEntry, QueueEvent
from queue_app.services import line, transfers

pytestmark = pytest.mark.django_db(transaction=True)  # each run has its own connection

REQUEUE = "queue_app.tasks.requeue_expired"


@pytest.fixture(autouse=True)
def no_locks_left():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(*(PERIODIC_LOCK_PREFIX + name for name in (REQUEUE, "queue_app.tasks.dispatch")))
    yield client
    client.delete(*(PERIODIC_LOCK_PREFIX + name for name in (REQUEUE, "queue_app.tasks.dispatch")))


@pytest.fixture
def expired(settings, alice, make_meeting) -> QueueEntry:
    """A running entry whose worker stopped heartbeating: the reaper's work."""
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    line.entry_enqueue(meeting=make_meeting(alice))
    entry = transfers.transfer_claim_next(worker="")
    assert transfers.transfer_begin(entry_id=entry.id, worker="celery@gone:1")
    QueueEntry.objects.filter(pk=entry.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    return entry


def run_together(count: int, call) -> list:
    """`call()` in `count` threads released at the same instant; their results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = ("ok", call())
        except Exception as exc:  # reported below, with the test's assertion
            results[index] = ("error", exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_two_concurrent_runs_of_the_reaper_do_the_work_once(expired):
    before = QueueEvent.objects.count()
    results = run_together(2, lambda: periodic(REQUEUE, 30.0))
    # One run requeued the entry (it returns how many); the other skipped (None).
    assert sorted(results, key=repr) == sorted([("ok", 1), ("ok", None)], key=repr), results
    row = QueueEntry.objects.get(pk=expired.pk)
    assert row.status == EntryStatus.QUEUED
    events = QueueEvent.objects.order_by("seq")[before:]
    assert [event.update_type for event in events] == ["task_retried"]


def test_the_next_tick_runs_again(expired, no_locks_left):
    assert periodic(REQUEUE, 0.5) == 1
    assert periodic(REQUEUE, 0.5) is None  # the same tick: skipped
    assert 0 < no_locks_left.pttl(PERIODIC_LOCK_PREFIX + REQUEUE) <= 450
    time.sleep(0.5)
    assert periodic(REQUEUE, 0.5) == 0  # the next tick runs (nothing left to requeue)


def test_only_scheduled_tasks_run_through_the_guard(no_locks_left):
    assert periodic("queue_app.tasks.notify_failure", 10.0) is None
    assert not no_locks_left.exists(PERIODIC_LOCK_PREFIX + "queue_app.tasks.notify_failure")


def test_beat_sends_every_periodic_task_through_the_guard():
    schedule = app.conf.beat_schedule
    assert {entry["task"] for entry in schedule.values()} == {"fathomloom.periodic"}
    names = {entry["args"][0] for entry in schedule.values()}
    assert names == {REQUEUE, "queue_app.tasks.dispatch", "queue_app.tasks.prune_events"}
    for entry in schedule.values():
        # A message older than the lock's life is dropped: a backlog runs no sweep twice.
        assert entry["options"]["expires"] < entry["schedule"].total_seconds()
