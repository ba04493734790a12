"""Celery tasks: interfaces that take ids, call services, and own retries.

Messages carry only an entry id. Order, status, attempts and leases live in the database,
so any task may run twice: each run starts with a conditional claim and does nothing
if the claim fails.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TypeVar

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from kombu.exceptions import OperationalError as BrokerError

from queue_app.models import Activity, ActivityBy, ActivityKind, EntryStatus, QueueEntry
from queue_app.retry_policy import Decision, Failure, GiveUp, Retry
from queue_app.services import line, transfers
from queue_app.services.changes import DISPATCH_TASK, dispatch_started
from queue_app.transfer import (
    DATABASE_ERRORS,
    TransferCancelled,
    TransferFailed,
    reconnect,
    run_transfer,
)

logger = logging.getLogger(__name__)

UNEXPECTED = Failure("An unexpected error stopped the transfer.", transient=True, kind="unexpected")


# Waits between tries of a service call that found the database unreachable.
DATABASE_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)
DATABASE_RETRY_MAX_DELAY = 5.0

T = TypeVar("T")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def with_database(call: Callable[[], T], *, what: str) -> T:
    """`call()`, tried again on a new connection while the database is unreachable.

    After a PostgreSQL restart the worker's connection is dead: without a new one, the
    end of a transfer (or its failure) could not be recorded and the entry would wait
    for the lease reaper. Every call retried here is a conditional service call that
    does nothing if the entry is no longer this worker's, so trying again is safe; it
    gives up after a lease's length (the reaper's turn), raising the last error.
    """
    deadline = time.monotonic() + settings.QUEUE_LEASE_SECONDS
    tries = 0
    while True:
        try:
            return call()
        except DATABASE_ERRORS:
            delay = (
                DATABASE_RETRY_DELAYS[tries]
                if tries < len(DATABASE_RETRY_DELAYS)
                else DATABASE_RETRY_MAX_DELAY
            )
            if time.monotonic() + delay > deadline:
                raise
            tries += 1
            logger.warning("%s: the database is unreachable; trying again in %s s", what, delay)
            reconnect()
            time.sleep(delay)


def _unless_database_is_down(what: str, call: Callable[[], int]) -> int:
    """A periodic task's work, skipped with one WARNING while the database is unreachable:
    beat runs it again within seconds, so there is nothing to retry (and no traceback)."""
    try:
        return call()
    except DATABASE_ERRORS:
        logger.warning("%s skipped: the database is unreachable", what)
        reconnect()
        return 0


@shared_task(name=DISPATCH_TASK, ignore_result=True)
def dispatch() -> int:
    """Hand out work: claim entries from the head of the line while slots are free."""
    dispatch_started()  # before the claims: a change committed from now on asks again

    def claim_while_free() -> int:
        started = 0
        while (entry := transfers.transfer_claim_next()) is not None:
            transfer.delay(str(entry.id))
            started += 1
        return started

    return _unless_database_is_down("dispatch", claim_while_free)


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
    begun = with_database(
        lambda: transfers.transfer_begin(entry_id=entry_id, worker=worker),
        what=f"entry {entry_id}",
    )
    if not begun:
        logger.info("entry %s is not ours to run; skipping", entry_id)
        return
    try:
        done = run_transfer(entry_id=entry_id, worker=worker)
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
        with_database(
            lambda: transfers.transfer_complete(
                entry_id=entry_id,
                worker=worker,
                result_url=done.share_url,
                bytes_moved=done.bytes_moved,
            ),
            what=f"entry {entry_id}",
        )
        return
    decision = with_database(
        lambda: transfers.transfer_retry_or_fail(entry_id=entry_id, worker=worker, failure=failure),
        what=f"entry {entry_id}",
    )
    _follow_up(entry_id, decision)


def _follow_up(entry_id: str, decision: Decision | None) -> None:
    """After a failed attempt: wake the dispatcher when the wait is over, or tell the owner."""
    try:
        if isinstance(decision, Retry):
            dispatch.apply_async(countdown=decision.delay_seconds + 0.05)
        elif isinstance(decision, GiveUp):
            notify_failure.delay(entry_id)
    except BrokerError:
        # Redis (the broker) is unreachable: the decision is in the database already. The
        # beat tick dispatches anyway; the owner's email is sent from here instead.
        logger.warning("entry %s: the broker is unreachable for the follow-up", entry_id)
        if isinstance(decision, GiveUp):
            notify_failure(entry_id)


# OSError: the mail server; database errors: an outage (retried on a new connection).
@shared_task(
    ignore_result=True,
    autoretry_for=(OSError, *DATABASE_ERRORS),
    retry_backoff=True,
    max_retries=5,
)
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


# Named in services.activity (NOTIFY_CANCELLED_TASK), which asks for it after a staff
# cancellation commits; the same retries as notify_failure.
@shared_task(
    name="queue_app.tasks.notify_cancelled",
    ignore_result=True,
    autoretry_for=(OSError, *DATABASE_ERRORS),
    retry_backoff=True,
    max_retries=5,
)
def notify_cancelled(activity_ids: list[int]) -> int:
    """Email each owner whose entries staff cancelled: one message per owner, with the
    meetings and staff's note. Returns how many emails were sent."""
    rows = (
        Activity.objects.filter(
            pk__in=activity_ids[:10_000], kind=ActivityKind.CANCELLED, by=ActivityBy.STAFF
        )
        .select_related("user")
        .order_by("user_id", "id")
    )
    by_owner: dict[int, list[Activity]] = {}
    for row in rows:
        by_owner.setdefault(row.user_id, []).append(row)
    sent = 0
    for cancelled in by_owner.values():
        owner = cancelled[0].user
        if not owner.email:
            continue
        titles = "\n".join(f"- {row.title}" for row in cancelled)
        notes = sorted({row.note for row in cancelled if row.note})
        why = "\n".join(f"Staff's note: {note}" for note in notes) or "Staff left no note."
        subject = (
            f"Transfer cancelled: {cancelled[0].title}"
            if len(cancelled) == 1
            else f"{len(cancelled)} transfers cancelled"
        )
        send_mail(
            subject=subject,
            message=(
                f"Staff cancelled your transfer{'s' if len(cancelled) > 1 else ''} to Loom:\n"
                f"{titles}\n\n{why}\n\n"
                "You can put them back in line from your queue page."
            ),
            from_email=None,
            recipient_list=[owner.email],
        )
        sent += 1
    return sent


@shared_task(ignore_result=True)
def requeue_expired() -> int:
    return _unless_database_is_down(
        "requeue_expired", lambda: len(transfers.transfers_requeue_expired())
    )


@shared_task(ignore_result=True)
def prune_events() -> int:
    return _unless_database_is_down("prune_events", line.events_prune)
