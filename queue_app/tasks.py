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

from queue_app import services

logger = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@shared_task(ignore_result=True)
def dispatch() -> int:
    """Hand out work: claim entries from the head of the line while slots are free."""
    started = 0
    while (entry := services.claim_next()) is not None:
        transfer.delay(str(entry.id))
        started += 1
    return started


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def transfer(entry_id: str) -> None:
    """Move one meeting from Fathom to the uploader.

    The walking skeleton completes at once; the Fathom download and the upload replace
    the body of this task (issue 5) without changing how it claims and finishes.
    """
    worker = worker_name()
    if not services.begin(entry_id=entry_id, worker=worker):
        logger.info("entry %s is not ours to run; skipping", entry_id)
        return
    services.complete(entry_id=entry_id, worker=worker, result_url="")


@shared_task(ignore_result=True)
def requeue_expired() -> int:
    return services.requeue_expired()


@shared_task(ignore_result=True)
def prune_events() -> int:
    return services.prune_events()
