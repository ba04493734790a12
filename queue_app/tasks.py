"""Celery tasks: interfaces that take ids, call services, and own retries.

Messages carry only an entry id. Order, status, attempts and leases live in the database,
so any task may run twice: each run starts with a conditional claim and does nothing
if the claim fails.
"""

from __future__ import annotations

import logging
import os
import socket

from celery import shared_task
from django.core.mail import send_mail

from queue_app.models import EntryStatus, QueueEntry
from queue_app.retry_policy import Decision, Failure, GiveUp, Retry
from queue_app.services import line, transfers
from queue_app.services.changes import DISPATCH_TASK
from queue_app.transfer import TransferCancelled, TransferFailed, run_transfer

logger = logging.getLogger(__name__)

UNEXPECTED = Failure("An unexpected error stopped the transfer.", transient=True, kind="unexpected")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@shared_task(name=DISPATCH_TASK, ignore_result=True)
def dispatch() -> int:
    """Hand out work: claim entries from the head of the line while slots are free."""
    started = 0
    while (entry := transfers.transfer_claim_next()) is not None:
        transfer.delay(str(entry.id))
        started += 1
    return started


@shared_task(
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # Below the broker's visibility timeout (2 h), so a running transfer is never
    # handed to a second worker while the first may still finish.
    soft_time_limit=3600,
    time_limit=3600 + 300,
)
def transfer(entry_id: str) -> None:
    """Move one meeting from Fathom to the uploader, or schedule its retry, or fail it."""
    worker = worker_name()
    if not transfers.transfer_begin(entry_id=entry_id, worker=worker):
        logger.info("entry %s is not ours to run; skipping", entry_id)
        return
    try:
        share_url = run_transfer(entry_id=entry_id, worker=worker)
    except TransferCancelled:
        logger.info("entry %s was cancelled or taken back; stopped", entry_id)
        return
    except TransferFailed as stopped:
        failure = stopped.failure
    except Exception:
        # A bug or an unforeseen error: retry (up to max_attempts) rather than lose the entry.
        logger.exception("entry %s: unexpected error during transfer", entry_id)
        failure = UNEXPECTED
    else:
        transfers.transfer_complete(entry_id=entry_id, worker=worker, result_url=share_url)
        return
    decision = transfers.transfer_retry_or_fail(entry_id=entry_id, worker=worker, failure=failure)
    _follow_up(entry_id, decision)


def _follow_up(entry_id: str, decision: Decision | None) -> None:
    """After a failed attempt: wake the dispatcher when the wait is over, or tell the owner."""
    if isinstance(decision, Retry):
        dispatch.apply_async(countdown=decision.delay_seconds + 0.05)
    elif isinstance(decision, GiveUp):
        notify_failure.delay(entry_id)


@shared_task(ignore_result=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def notify_failure(entry_id: str) -> None:
    """Email the owner of a transfer that failed for good."""
    entry = QueueEntry.objects.select_related("owner", "meeting").filter(pk=entry_id).first()
    if entry is None or entry.status != EntryStatus.FAILED or not entry.owner.email:
        return
    send_mail(
        subject=f"Transfer failed: {entry.meeting}",
        message=(
            f"fathomloom could not move “{entry.meeting}” to Loom.\n\n"
            f"Reason: {entry.last_error}\n\n"
            "You can retry it from your queue page once the cause is fixed."
        ),
        from_email=None,
        recipient_list=[entry.owner.email],
    )


@shared_task(ignore_result=True)
def requeue_expired() -> int:
    return len(transfers.transfers_requeue_expired())


@shared_task(ignore_result=True)
def prune_events() -> int:
    return line.events_prune()
