"""What the sandbox POSTs to others: webhook deliveries and ``destination_url`` callbacks.

Signed as Fathom signs its webhooks (Standard Webhooks: ``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>``
keyed with the base64-decoded part of ``whsec_...``). Standard library only, like the rest
of the sandbox; each POST runs on a thread of its own so the answer that caused it is not
held up, and is retried a few times as Fathom's sender retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

WEBHOOK_SECRET_PREFIX = "whsec_"
ATTEMPTS = 3
RETRY_DELAY = 0.5
TIMEOUT = 10.0


def new_secret() -> str:
    """A Standard Webhooks secret, as Fathom shows them: ``whsec_`` and base64 of 24 bytes."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def post_signed(
    url: str,
    payload: Any,
    *,
    secrets_: list[str],
    kind: str,
    record: Callable[[dict[str, Any]], None],
    delay: float = 0.0,
    before_send: Callable[[], Any] | None = None,
) -> threading.Thread:
    """POST ``payload`` to ``url`` after ``delay`` seconds, on a thread; returns the thread.

    Signed with every secret in ``secrets_`` (space-separated, as while rotating); with
    none, no ``webhook-signature`` header is sent. ``before_send`` runs just before the
    first attempt and may return a new payload. Each attempt is ``record``-ed:
    ``{kind, url, message_id, attempt, status}`` (never a secret).
    """

    def run() -> None:
        if delay:
            time.sleep(delay)
        body_payload = payload
        if before_send is not None:
            body_payload = before_send()
            if body_payload is None:
                return
        body = json.dumps(body_payload).encode()
        message_id = "msg_" + secrets.token_hex(12)
        for attempt in range(1, ATTEMPTS + 1):
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "User-Agent": "FathomSandbox/1.0",
            }
            if secrets_:
                headers["webhook-signature"] = " ".join(
                    signature(secret, message_id, timestamp, body) for secret in secrets_
                )
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            status = 0
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (OSError, ValueError):
                status = 0
            record(
                {
                    "time": time.time(),
                    "kind": kind,
                    "url": url,
                    "message_id": message_id,
                    "attempt": attempt,
                    "status": status,
                }
            )
            # 2xx: received; 4xx other than 429: refused for good, as Svix stops too.
            if 200 <= status < 300 or (400 <= status < 500 and status != 429):
                return
            time.sleep(RETRY_DELAY * attempt)

    thread = threading.Thread(target=run, name=f"sandbox-{kind}", daemon=True)
    thread.start()
    return thread
