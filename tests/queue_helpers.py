"""Ending a running transfer the way a worker would, for tests that need an entry failed
or waiting to retry: through the retry policy, as queue_app.tasks does."""

from __future__ import annotations

from uuid import UUID

from django.test import override_settings

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
