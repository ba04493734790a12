"""Fathom's download callbacks: where a transfer asks Fathom to POST its finished download
(`destination_url`), and the Redis mailbox that carries a verified callback from the web
process that received it to the worker waiting for it.

A callback names its account in the URL, as a webhook delivery does, and is signed with
that account's webhook secret (queue_app.webhooks verifies it). The mailbox is one Redis
list per (account, download): the worker blocks on it, so a callback that arrives before
the worker starts waiting is not lost, and one that never comes costs one timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.urls import reverse

from queue_app.integrations.fathom.parsing import parse_json
from queue_app.models import FathomAccount

logger = logging.getLogger(__name__)

MAILBOX_PREFIX = "fathomloom:download-callback"
# A download's signed URL lives about a day; a callback nobody took is useless after that.
MAILBOX_TTL_SECONDS = 24 * 3600
# The largest callback body accepted: a RecordingDownload is a few hundred bytes.
MAX_CALLBACK_BYTES = 16 * 1024
# How long one blocking wait lasts: between two, the transfer reports progress (and so
# notices a cancellation).
WAIT_SLICE_SECONDS = 1


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=WAIT_SLICE_SECONDS + 5)


def _mailbox(account_id: int, download_id: str) -> str:
    return f"{MAILBOX_PREFIX}:{account_id}:{download_id}"


def callback_url_for(account: FathomAccount | None) -> str | None:
    """The `destination_url` for a download of `account`'s, or None to poll instead.

    None unless FATHOM_DOWNLOAD_CALLBACKS is on and the account has a webhook secret: the
    callback is verified with it, and one that cannot be verified is never accepted.
    """
    if not settings.FATHOM_DOWNLOAD_CALLBACKS or account is None:
        return None
    if not account.webhook_secret_encrypted:
        return None
    path = reverse("fathom-download-callback") + f"?account={account.webhook_token}"
    return settings.PUBLIC_BASE_URL.rstrip("/") + path


def callback_post(*, account_id: int, download_id: str, body: bytes) -> None:
    """Leave a verified callback's body for the worker waiting on that download."""
    key = _mailbox(account_id, download_id)
    client = _redis()
    try:
        with client.pipeline() as pipe:
            pipe.rpush(key, body)
            pipe.expire(key, MAILBOX_TTL_SECONDS)
            pipe.execute()
    finally:
        client.close()


def decode(body: bytes) -> object:
    """A mailbox body as JSON, bounded as every Fathom answer is."""
    return parse_json(body, "download callback")


def callback_wait(
    *,
    account_id: int,
    download_id: str,
    timeout: float,
    on_tick: Callable[[], None] | None = None,
) -> bytes | None:
    """The body of the download's callback once it arrives, or None after `timeout` s
    (or at once when Redis cannot be reached: the transfer then polls Fathom instead).

    `on_tick` runs between waits of WAIT_SLICE_SECONDS (a transfer reports progress
    there, which raises once the entry was cancelled).
    """
    key = _mailbox(account_id, download_id)
    deadline = time.monotonic() + timeout
    client = _redis()
    try:
        return _wait(client, key, deadline, on_tick)
    except redis.RedisError as exc:
        logger.warning("download callback mailbox unreachable (%s); polling", type(exc).__name__)
        return None
    finally:
        client.close()


def _wait(
    client: redis.Redis, key: str, deadline: float, on_tick: Callable[[], None] | None
) -> bytes | None:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        popped = client.blpop([key], timeout=max(0.05, min(WAIT_SLICE_SECONDS, left)))
        if popped is not None:
            client.delete(key)  # a repeated callback is not needed any more
            return popped[1]
        if on_tick is not None:
            on_tick()
