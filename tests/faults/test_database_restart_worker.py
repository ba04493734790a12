"""A worker survives a database restart in the middle of a transfer (issue 11, case 2).

Before the fix, the first query on a connection that PostgreSQL dropped failed, the
transfer's own error handling failed on the same dead connection, and the entry stayed
"running" until the lease reaper took it (5 minutes by default, labelled "The worker
stopped responding." although the worker was alive). The lease keeper's thread kept its
dead connection too, so the lease ran out even for a transfer that could carry on.

The Celery task runs in this process, against the Fathom sandbox and the local uploader;
tests/faults/dbfaults.py drops the connections as a restart does.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from queue_app import tasks
from queue_app import transfer as transfer_module
from queue_app.integrations.uploaders import LocalUploader, UploadResult
from queue_app.models import EntryStatus, QueueEntry, QueueEvent
from queue_app.services import line, transfers
from queue_app.transfer import LeaseKeeper
from tests.faults.dbfaults import DatabaseFaults

# Committed rows: the lease keeper's thread has its own connection.
pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "celery@test:4242"


@pytest.fixture
def faults(monkeypatch) -> DatabaseFaults:
    return DatabaseFaults(monkeypatch)


@pytest.fixture
def follow_ups(monkeypatch) -> list[tuple[str, Any]]:
    """What the task asks of the broker after an attempt (nothing consumes it here)."""
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        tasks.dispatch, "apply_async", lambda **kwargs: calls.append(("dispatch", kwargs))
    )
    monkeypatch.setattr(tasks.notify_failure, "delay", lambda *args: calls.append(("notify", args)))
    return calls


class FaultyUploader(LocalUploader):
    """The local uploader; `before_upload` runs first (set by a test)."""

    before_upload: Any = None

    def upload(self, path: Path, *, title: str, description: str) -> UploadResult:
        if FaultyUploader.before_upload is not None:
            FaultyUploader.before_upload()
        return super().upload(path, title=title, description=description)


@pytest.fixture
def claimed(settings, tmp_path, sandbox, connect_fathom, alice) -> QueueEntry:
    """An entry claimed by the dispatcher, its transfer task not started yet."""
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    settings.QUEUE_HEARTBEAT_SECONDS = 0.1
    settings.QUEUE_LEASE_SECONDS = 2
    settings.FATHOM_POLL_INTERVAL_SECONDS = 0.05
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.UPLOADER_BACKEND = f"{__name__}.FaultyUploader"
    meeting = connect_fathom(alice, "sandbox-key-alice")[1001]
    line.entry_enqueue(meeting=meeting)
    entry = transfers.transfer_claim_next(worker="")
    assert entry is not None
    yield entry
    FaultyUploader.before_upload = None


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def history(entry: QueueEntry) -> list[str]:
    return list(
        QueueEvent.objects.filter(entry_id=entry.pk)
        .order_by("seq")
        .values_list("update_type", flat=True)
    )


def test_a_restart_during_the_download_lets_the_transfer_complete(
    claimed, faults, follow_ups, monkeypatch, caplog
):
    reports = transfer_module.publish_progress

    def publish_then_restart(**kwargs: Any) -> bool:
        if kwargs["stage"] == transfer_module.STAGE_DOWNLOADING and not faults.failures:
            faults.restart()  # every connection open now dies, the task's and the keeper's
        return reports(**kwargs)

    monkeypatch.setattr(transfer_module, "publish_progress", publish_then_restart)
    tasks.transfer(str(claimed.id))

    faults.heal()
    connection.close()
    final = QueueEntry.objects.get(pk=claimed.pk)
    assert faults.failures > 0  # the restart did hit the transfer
    assert (final.status, final.attempts) == (EntryStatus.COMPLETED, 1), final.last_error
    assert history(final).count("task_completed") == 1
    assert errors_logged(caplog) == []


def test_an_outage_at_the_end_of_the_transfer_is_waited_out(claimed, faults, follow_ups, caplog):
    def outage() -> None:
        faults.down()
        faults.up_after(1.0)

    FaultyUploader.before_upload = outage
    started = time.monotonic()
    tasks.transfer(str(claimed.id))

    faults.heal()
    connection.close()
    final = QueueEntry.objects.get(pk=claimed.pk)
    assert (final.status, final.attempts) == (EntryStatus.COMPLETED, 1), final.last_error
    assert time.monotonic() - started < 15
    assert errors_logged(caplog) == []


def test_a_restart_at_the_start_retries_the_entry_at_once_with_a_true_reason(
    claimed, faults, follow_ups, monkeypatch, caplog
):
    begin = transfers.transfer_begin

    def begin_then_restart(**kwargs: Any) -> bool:
        begun = begin(**kwargs)
        faults.restart()
        return begun

    monkeypatch.setattr(transfers, "transfer_begin", begin_then_restart)
    tasks.transfer(str(claimed.id))

    faults.heal()
    connection.close()
    final = QueueEntry.objects.get(pk=claimed.pk)
    assert final.status == EntryStatus.RETRYING
    assert "database" in final.last_error.lower()
    assert "worker stopped" not in final.last_error.lower()
    assert [name for name, _ in follow_ups] == ["dispatch"]  # woken after the short wait
    assert errors_logged(caplog) == []


def test_the_lease_keeper_reconnects_after_a_restart(claimed, faults, settings):
    assert transfers.transfer_begin(entry_id=claimed.id, worker=WORKER)
    with LeaseKeeper(entry_id=claimed.id, worker=WORKER) as lease:
        time.sleep(0.3)  # the keeper has renewed the lease on its connection by now
        faults.restart()
        time.sleep(settings.QUEUE_LEASE_SECONDS + 0.5)
        connection.close()  # this thread's connection died as well
        assert transfers.transfers_requeue_expired() == []
        assert not lease.lost
    assert QueueEntry.objects.get(pk=claimed.pk).status == EntryStatus.RUNNING


@pytest.mark.parametrize("task", ["dispatch", "requeue_expired", "prune_events"])
def test_a_periodic_task_during_an_outage_is_skipped_without_a_traceback(
    faults, settings, task, caplog
):
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    connection.ensure_connection()
    faults.down()
    assert getattr(tasks, task)() == 0  # beat runs it again within seconds
    faults.heal()
    assert errors_logged(caplog) == []
    assert any("database is unreachable" in r.getMessage() for r in caplog.records)
