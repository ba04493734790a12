"""Celery tasks: interfaces that take ids, call services, and own retries.

Messages carry only an entry id. Order, status, attempts and leases live in the database,
so any task may run twice: each run starts with a conditional claim and does nothing
if the claim fails.
"""

from __future__ import annotations

import logging
import os
import random
import socket

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail

from queue_app import services
from queue_app.models import EntryStatus, QueueEntry

logger = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def retry_delay(attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; never sooner than the server asked (Retry-After)."""
    ceiling = min(
        settings.QUEUE_RETRY_MAX_SECONDS,
        settings.QUEUE_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0),
    )
    # "Equal jitter": half fixed, half random, so retries spread out but still back off.
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    return max(delay, retry_after or 0.0)


@shared_task(ignore_result=True)
def dispatch() -> int:
    """Hand out work: claim entries from the head of the line while slots are free."""
    started = 0
    while (entry := services.claim_next()) is not None:
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
    from queue_app.transfer import TransferCancelled, TransferFailed, run_transfer

    worker = worker_name()
    if not services.begin(entry_id=entry_id, worker=worker):
        logger.info("entry %s is not ours to run; skipping", entry_id)
        return
    try:
        share_url = run_transfer(entry_id=entry_id, worker=worker)
    except TransferCancelled:
        logger.info("entry %s was cancelled or taken back; stopped", entry_id)
        return
    except TransferFailed as failure:
        _after_failure(entry_id, worker, failure.reason, failure.transient, failure.retry_after)
        return
    except Exception:
        # A bug or an unforeseen error: retry (up to max_attempts) rather than lose the entry.
        logger.exception("entry %s: unexpected error during transfer", entry_id)
        _after_failure(entry_id, worker, "An unexpected error stopped the transfer.", True, None)
        return
    services.complete(entry_id=entry_id, worker=worker, result_url=share_url)


def _after_failure(
    entry_id: str, worker: str, reason: str, transient: bool, retry_after: float | None
) -> None:
    entry = QueueEntry.objects.filter(pk=entry_id).only("attempts").first()
    if entry is None:
        return
    if transient:
        delay = retry_delay(entry.attempts, retry_after)
        services.schedule_retry(entry_id=entry_id, worker=worker, error=reason, delay_seconds=delay)
        # The dispatcher picks the entry up again once its wait is over.
        dispatch.apply_async(countdown=delay + 0.05)
    else:
        services.fail(entry_id=entry_id, worker=worker, error=reason)
    entry = QueueEntry.objects.select_related("owner", "meeting").get(pk=entry_id)
    if entry.status == EntryStatus.FAILED:
        notify_failure.delay(str(entry.id))


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
    return services.requeue_expired()


@shared_task(ignore_result=True)
def prune_events() -> int:
    return services.prune_events()
