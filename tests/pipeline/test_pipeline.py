"""The worker fleet for real: Celery worker processes, beat, the Fathom sandbox, daphne.

Each test queues sandbox recordings and watches what happens through the database,
the sockets and the sandbox's request log; faults are injected in the sandbox. Each runs
on Redis and on RabbitMQ as the broker (the `broker` fixture, tests/pipeline/conftest.py).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from queue_app.models import EntryStatus, QueueEntry, QueueEvent, TransferAttempt
from queue_app.services import line
from tests.helpers import PASSWORD
from tests.integration.wsclient import open_socket
from tests.processes import LOG_DIR, Process, login, start_beat
from tests.queue_helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def celery_beat(broker_env) -> Iterator[Process]:
    """Beat, for the lease reaper and the dispatch tick (1 s and 2 s here).

    One per test, stopped before the worker is waited on and the database is emptied: a
    periodic task holding the queue lock while pytest-django truncates the tables is a
    deadlock, and one started after the wait would run against the next test's rows.
    """
    schedule = LOG_DIR.parent / "test-beat-schedule"
    beat = start_beat("celery-beat", broker_env, schedule)
    yield beat
    beat.stop()


@pytest.fixture
def fleet(live_server_url, celery_worker, celery_beat, sandbox):
    # Torn down in reverse: beat stops, then the worker is waited on until idle.
    return live_server_url


def fetch_share(base_url: str, share_url: str) -> bytes:
    response = httpx.get(base_url + urlsplit(share_url).path, timeout=10)
    assert response.status_code == 200
    return response.content


def events_of(entry: QueueEntry) -> list[str]:
    return [
        event.update_type
        for event in QueueEvent.objects.order_by("seq")
        if any(item["id"] == str(entry.id) for item in event.payload)
    ]


def test_meetings_of_two_users_all_arrive_byte_identical(fleet, sandbox, make_user, connect_fathom):
    alice, bob = make_user("alice"), make_user("bob")
    alices = connect_fathom(alice, "sandbox-key-alice")
    bobs = connect_fathom(bob, "sandbox-key-bob")
    sockets = {
        name: open_socket(fleet, session=login(fleet, name, PASSWORD)) for name in ("alice", "bob")
    }
    try:
        for socket in sockets.values():
            socket.recv()
        chosen = [alices[1001], alices[1002], alices[1003], bobs[2001], bobs[2002]]
        entries = [line.entry_enqueue(meeting=meeting) for meeting in chosen]
        done = wait_for([e.id for e in entries])

        for entry, meeting in zip(entries, chosen, strict=True):
            final = done[str(entry.id)]
            assert final.status == EntryStatus.COMPLETED, final.last_error
            assert final.attempts == 1
            video = fetch_share(fleet, final.result_url)
            assert video == sandbox.control.recording_bytes(meeting.recording_id)

        for name, socket in sockets.items():
            owner = alice if name == "alice" else bob
            seen: dict[str, list[str]] = {}
            expected = {str(e.id) for e in entries if e.owner_id == owner.pk}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(
                seen.get(entry_id, [])[-1:] != ["task_completed"] for entry_id in expected
            ):
                message = socket.recv()
                if message["type"] != "QueueUpdate":
                    continue
                for item in message["queue"]:
                    if item.get("mine"):
                        seen.setdefault(item["id"], []).append(message["update_type"])
            assert set(seen) == expected, name
            for updates in seen.values():
                assert updates == ["meeting_added", "task_started", "task_completed"]
    finally:
        for socket in sockets.values():
            socket.close()


def test_429_is_honoured_then_the_transfer_completes(fleet, sandbox, make_user, connect_fathom):
    alice = make_user("alice")
    meeting = connect_fathom(alice, "sandbox-key-alice")[1004]
    sandbox.control.add_fault(
        "429", match="/recordings/1004/download", method="POST", retry_after=2
    )
    entry = line.entry_enqueue(meeting=meeting)
    final = wait_for([entry.id])[str(entry.id)]
    assert final.status == EntryStatus.COMPLETED, final.last_error
    assert final.attempts == 2
    calls = [r for r in sandbox.control.requests() if "/recordings/1004/" in r["path"]]
    limited = next(i for i, r in enumerate(calls) if r["status"] == 429)
    assert calls[limited + 1]["time"] - calls[limited]["time"] >= 2.0
    assert events_of(final) == [
        "meeting_added",
        "task_started",
        "task_retried",
        "task_started",
        "task_completed",
    ]


def test_two_server_errors_then_success_takes_three_attempts(
    fleet, sandbox, make_user, connect_fathom
):
    alice = make_user("alice")
    meeting = connect_fathom(alice, "sandbox-key-alice")[1005]
    sandbox.control.add_fault(
        "status", match="/recordings/1005/download", method="POST", status=503, times=2
    )
    entry = line.entry_enqueue(meeting=meeting)
    final = wait_for([entry.id])[str(entry.id)]
    assert (final.status, final.attempts) == (EntryStatus.COMPLETED, 3)
    # The worker's attempt history: two transient failures, kept, then the transfer with
    # the bytes it moved (issue 16).
    history = list(TransferAttempt.objects.filter(entry=entry).order_by("started_at", "id"))
    assert [(a.number, a.outcome, a.error_kind) for a in history] == [
        (1, "retrying", "fathom_unavailable"),
        (2, "retrying", "fathom_unavailable"),
        (3, "completed", ""),
    ]
    assert history[2].bytes_moved == len(sandbox.control.recording_bytes(1005))
    assert all(a.worker and a.finished_at for a in history)


def test_not_found_fails_at_once_with_a_readable_reason_and_an_email(
    fleet, sandbox, make_user, connect_fathom
):
    alice = make_user("alice")
    meeting = connect_fathom(alice, "sandbox-key-alice")[1006]
    sandbox.control.add_fault(
        "status", match="/recordings/1006/download", method="POST", status=404
    )
    mail_dir = LOG_DIR.parent / "test-mail"
    before = set(mail_dir.glob("*")) if mail_dir.exists() else set()
    entry = line.entry_enqueue(meeting=meeting)
    final = wait_for([entry.id])[str(entry.id)]
    assert (final.status, final.attempts) == (EntryStatus.FAILED, 1)
    assert "1006" in final.last_error and "404" in final.last_error
    assert "no recording" in final.last_error.lower()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (set(mail_dir.glob("*")) - before):
        time.sleep(0.2)
    (mail,) = set(mail_dir.glob("*")) - before
    text = mail.read_text()
    assert "alice@example.com" in text and final.last_error in text


def test_a_truncated_download_is_retried_then_completes(fleet, sandbox, make_user, connect_fathom):
    alice = make_user("alice")
    meeting = connect_fathom(alice, "sandbox-key-alice")[1007]
    sandbox.control.add_fault("truncate", match="/signed/*", bytes=1000)
    entry = line.entry_enqueue(meeting=meeting)
    final = wait_for([entry.id])[str(entry.id)]
    assert (final.status, final.attempts) == (EntryStatus.COMPLETED, 2)
    assert fetch_share(fleet, final.result_url) == sandbox.control.recording_bytes(1007)


def test_malformed_answers_fail_the_entry_and_the_worker_carries_on(
    fleet, sandbox, make_user, connect_fathom
):
    alice = make_user("alice")
    meetings = connect_fathom(alice, "sandbox-key-alice")
    sandbox.control.add_fault("malformed_json", match="/recordings/1008/download", method="POST")
    sandbox.control.add_fault("wrong_types", match="/recordings/1009/downloads/*", method="GET")
    broken = [
        line.entry_enqueue(meeting=meetings[1008]),
        line.entry_enqueue(meeting=meetings[1009]),
    ]
    healthy = line.entry_enqueue(meeting=meetings[1010])
    done = wait_for([e.id for e in [*broken, healthy]])
    for entry in broken:
        final = done[str(entry.id)]
        assert (final.status, final.attempts) == (EntryStatus.FAILED, 1)
        assert "malformed" in final.last_error.lower() or "unexpected" in final.last_error.lower()
    assert done[str(healthy.id)].status == EntryStatus.COMPLETED


def test_a_worker_killed_mid_download_is_recovered_once(
    fleet, sandbox, make_user, connect_fathom, celery_worker
):
    alice = make_user("alice")
    meeting = connect_fathom(alice, "sandbox-key-alice")[1011]
    # The first video request hangs long enough to kill the worker in the middle of it.
    sandbox.control.add_fault("slow", match="/signed/*", seconds=8)
    entry = line.entry_enqueue(meeting=meeting)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = QueueEntry.objects.get(pk=entry.pk)
        if row.stage == "downloading" and row.worker:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the transfer never reached the download")
    victim = int(row.worker.rsplit(":", 1)[1])
    os.kill(victim, signal.SIGKILL)

    final = wait_for([entry.id], timeout=60)[str(entry.id)]
    assert final.status == EntryStatus.COMPLETED, final.last_error
    assert final.worker != row.worker
    assert final.attempts == 2
    history = events_of(final)
    assert history.count("task_completed") == 1
    assert history == [
        "meeting_added",
        "task_started",
        "task_retried",
        "task_started",
        "task_completed",
    ]
    assert fetch_share(fleet, final.result_url) == sandbox.control.recording_bytes(1011)
