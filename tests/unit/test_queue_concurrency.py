"""Eight workers racing for 200 entries: each claimed once, in line order, never more
running than QUEUE_CONCURRENCY. PostgreSQL only: row locks are what is under test.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db import connection, connections

from queue_app.models import EntryStatus, Meeting, QueueEntry, QueueEvent
from queue_app.services import line, transfers

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: SQLite has one writer and no row locks to race for",
    ),
]

CLAIMERS = 8
ENTRIES = 200
LIMIT = 3
# Long enough that claimers pile up against the limit, short enough for a quick test:
# 200 entries / 3 slots * 4 ms is under a second of holding.
HOLD_SECONDS = 0.004
TIMEOUT_SECONDS = 120


def test_concurrent_claimers_take_each_entry_once_in_order_within_the_limit(
    alice, settings, monkeypatch
) -> None:
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    settings.QUEUE_CONCURRENCY = LIMIT
    published: list[int] = []
    publish_lock = threading.Lock()

    def record(group: str, message: dict) -> bool:
        with publish_lock:
            published.append(message["event"]["seq"])
        return True

    monkeypatch.setattr("realtime.publisher.publish_to_group", record)

    meetings = Meeting.objects.bulk_create(
        Meeting(owner=alice, recording_id=i, title=f"m{i}") for i in range(ENTRIES)
    )
    order = [str(line.entry_enqueue(meeting=meeting).pk) for meeting in meetings]
    enqueued_seq = QueueEvent.objects.count()

    claimed: list[tuple[str, str]] = []  # (worker, entry id), appended by the claimers
    claimed_lock = threading.Lock()
    errors: list[BaseException] = []
    sampled_running: list[int] = []
    done = threading.Event()
    start = threading.Barrier(CLAIMERS + 1)

    def claimer(name: str) -> None:
        try:
            start.wait()
            while not done.is_set():
                entry = transfers.transfer_claim_next()
                if entry is None:
                    if not QueueEntry.objects.filter(status=EntryStatus.QUEUED).exists():
                        return
                    time.sleep(0.001)  # full: wait for a slot, as the dispatcher would
                    continue
                with claimed_lock:
                    claimed.append((name, str(entry.pk)))
                assert transfers.transfer_begin(entry_id=entry.pk, worker=name)
                time.sleep(HOLD_SECONDS)
                assert transfers.transfer_complete(entry_id=entry.pk, worker=name, result_url="")
        except BaseException as exc:
            errors.append(exc)
            done.set()
        finally:
            connections.close_all()  # this thread's own connection

    def sampler() -> None:
        # The database's own view, between the event log's instants.
        try:
            while not done.is_set():
                sampled_running.append(
                    QueueEntry.objects.filter(status=EntryStatus.RUNNING).count()
                )
                time.sleep(0.0005)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claimer, args=(f"worker-{i}",)) for i in range(CLAIMERS)]
    watcher = threading.Thread(target=sampler)
    for thread in threads:
        thread.start()
    watcher.start()
    start.wait()
    deadline = time.monotonic() + TIMEOUT_SECONDS
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0))
    done.set()
    watcher.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "claimers did not finish"
    assert not errors, errors

    # Each entry claimed exactly once, and all of them completed.
    assert Counter(entry_id for _, entry_id in claimed) == Counter(order)
    assert QueueEntry.objects.filter(status=EntryStatus.COMPLETED).count() == ENTRIES
    assert len({worker for worker, _ in claimed}) > 1, "the claimers did not overlap"

    events = list(QueueEvent.objects.order_by("seq").values_list("seq", "update_type", "entry_id"))
    # The log is contiguous: one event per change, 200 enqueues then 200 starts and ends.
    assert [seq for seq, _, _ in events] == list(range(1, enqueued_seq + 2 * ENTRIES + 1))
    started = [str(entry_id) for _, kind, entry_id in events if kind == "task_started"]
    assert started == order, "claims did not follow the line"

    # Replay the log: the number running never passes the limit, and reaches it.
    running, most = 0, 0
    for seq, kind, _ in events:
        running += {"task_started": 1, "task_completed": -1}.get(kind, 0)
        assert 0 <= running <= LIMIT, f"{running} running after event {seq}"
        most = max(most, running)
    assert most == LIMIT, "the limit never mattered; the test proves nothing"
    assert running == 0
    assert sampled_running and max(sampled_running) <= LIMIT

    # Every committed event was published once, after its commit.
    assert sorted(published) == [seq for seq, _, _ in events]
