"""Ending a running transfer the way a worker would, for tests that need an entry failed
or waiting to retry: through the retry policy, as queue_app.tasks does; and waiting for
real worker processes to finish entries."""

from __future__ import annotations

import time
from uuid import UUID

from django.test import override_settings

from queue_app.models import FINISHED_STATUSES, QueueEntry
from queue_app.retry_policy import Decision, Failure
from queue_app.services import transfers


def fail_transfer(*, entry_id: UUID | str, worker: str, error: str) -> Decision | None:
    """A permanent failure: the entry fails for good (None if not this worker's)."""
    return transfers.transfer_retry_or_fail(
        entry_id=entry_id, worker=worker, failure=Failure(error, transient=False)
    )


def wait_to_retry(
    *, entry_id: UUID | str, worker: str, error: str, delay_seconds: float
) -> Decision | None:
    """A transient failure retried after exactly `delay_seconds` (the server's Retry-After,
    with no backoff of our own), or failed if out of attempts."""
    with override_settings(QUEUE_RETRY_BASE_SECONDS=0):
        return transfers.transfer_retry_or_fail(
            entry_id=entry_id,
            worker=worker,
            failure=Failure(error, transient=True, retry_after=delay_seconds),
        )


def wait_for(entry_ids, *, timeout: float = 60) -> dict[str, QueueEntry]:
    """Wait until every entry has finished (completed, failed or cancelled); their rows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = {str(e.id): e for e in QueueEntry.objects.filter(pk__in=entry_ids)}
        if all(e.status in FINISHED_STATUSES for e in entries.values()):
            return entries
        time.sleep(0.2)
    states = QueueEntry.objects.filter(pk__in=entry_ids).values_list("status", "last_error")
    raise AssertionError(f"entries did not finish in {timeout} s: {list(states)}")
