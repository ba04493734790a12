"""Fathom's webhook: Standard Webhooks signature checks, and the receiver that imports
(and, with auto-queue on, queues) the meeting a delivery announces.

A delivery names its account in the URL (`/webhooks/fathom?account=<webhook_token>`) and
is verified with that account's own secret; see docs/credentials.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from queue_app import services
from queue_app.accounts import webhook_secret_of
from queue_app.crypto import CredentialDecryptError
from queue_app.importing import meeting_upsert
from queue_app.integrations.fathom import FathomError, parse_meeting
from queue_app.models import FathomAccount, Meeting, QueueEntry, WebhookDelivery

logger = logging.getLogger(__name__)

# Standard Webhooks' tolerance: a delivery signed more than this far from our clock is
# refused, so a captured delivery cannot be replayed later (its id may be pruned by then).
TOLERANCE_SECONDS = 5 * 60
# Seen webhook-ids are kept this long. Retries carry the same id with a fresh timestamp;
# Standard Webhooks senders (Svix's schedule) retry for about 28 hours, so a week covers them.
DELIVERY_RETENTION = timedelta(days=7)
MAX_WEBHOOK_ID_LENGTH = WebhookDelivery._meta.get_field("webhook_id").max_length


class WebhookVerificationError(Exception):
    """A delivery that is not provably from the account's sender; `code` is sent back."""

    code = "invalid_signature"


class MissingHeaders(WebhookVerificationError):
    code = "missing_headers"


class StaleTimestamp(WebhookVerificationError):
    code = "stale_timestamp"


class InvalidSignature(WebhookVerificationError):
    code = "invalid_signature"


def sign(*, secret: bytes, webhook_id: str, timestamp: str | int, body: bytes) -> str:
    """The `v1,<base64>` signature of a delivery (HMAC-SHA256 over `id.timestamp.body`)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    *,
    secret: bytes,
    webhook_id: str,
    timestamp: str,
    signature: str,
    body: bytes,
    now: float | None = None,
    tolerance: float | None = TOLERANCE_SECONDS,
) -> None:
    """Raise a WebhookVerificationError unless `signature` signs this delivery.

    `signature` is the `webhook-signature` header: space-separated `v1,<base64>` entries,
    any one of which may match (senders list several while rotating secrets). `now`
    defaults to the clock; `tolerance=None` skips the timestamp check (test vectors only).
    """
    if not webhook_id or not timestamp or not signature:
        raise MissingHeaders("webhook-id, webhook-timestamp and webhook-signature are required.")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise InvalidSignature("webhook-timestamp is not a whole number of seconds.")
    if tolerance is not None:
        now = time.time() if now is None else now
        if abs(now - int(timestamp)) > tolerance:
            raise StaleTimestamp("webhook-timestamp is more than 5 minutes from our clock.")
    expected = sign(secret=secret, webhook_id=webhook_id, timestamp=timestamp, body=body)
    matched = False
    for candidate in signature.split(" "):
        # Compare every v1 entry, in constant time each; other versions (v1a) are not ours.
        if candidate.startswith("v1,") and hmac.compare_digest(
            candidate.encode(), expected.encode()
        ):
            matched = True
    if not matched:
        raise InvalidSignature("No signature in webhook-signature matches this delivery.")


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)


def _auto_queue(account: FathomAccount, meeting: Meeting) -> bool:
    """Queue the meeting if its owner asked for it and it was never queued before.

    Never-queued, not merely not-in-line: a second announcement of a meeting already
    transferred (a new webhook-id, or one pruned) must not transfer it again.
    """
    if not account.auto_queue or QueueEntry.objects.filter(meeting=meeting).exists():
        return False
    try:
        services.enqueue(meeting=meeting)
    except services.AlreadyQueued:  # queued by its owner a moment ago: as good
        return False
    return True


def prune_deliveries(*, older_than: timedelta = DELIVERY_RETENTION) -> int:
    """Forget webhook-ids seen before `older_than` ago. Returns how many were forgotten."""
    deleted, _ = WebhookDelivery.objects.filter(
        received_at__lt=timezone.now() - older_than
    ).delete()
    return deleted


@csrf_exempt  # Fathom cannot send a CSRF token; the signature authenticates instead.
def fathom_webhook(request: HttpRequest) -> JsonResponse:
    """POST /webhooks/fathom?account=<token>: one Fathom delivery."""
    if request.method != "POST":
        response = _error(405, "method_not_allowed", "Only POST is accepted.")
        response["Allow"] = "POST"
        return response
    try:
        body = request.body
    except RequestDataTooBig:
        return _error(413, "too_large", "The delivery is larger than this service accepts.")
    webhook_id = request.headers.get("webhook-id", "")
    account = (
        FathomAccount.objects.filter(webhook_token=request.GET.get("account", ""))
        .select_related("user")
        .first()
    )
    try:
        secret = webhook_secret_of(account) if account is not None else None
    except CredentialDecryptError:
        logger.error("webhook secret of Fathom account %s cannot be decrypted", account.pk)
        secret = None
    if secret is None:
        # The same answer as a bad signature: the URL alone must not tell which
        # accounts exist or have a webhook set up.
        return _error(401, "invalid_signature", "Unknown account, or no webhook secret set.")
    try:
        verify(
            secret=secret,
            webhook_id=webhook_id,
            timestamp=request.headers.get("webhook-timestamp", ""),
            signature=request.headers.get("webhook-signature", ""),
            body=body,
        )
    except WebhookVerificationError as exc:
        logger.warning("Fathom webhook for account %s refused: %s", account.pk, exc.code)
        return _error(401, exc.code, str(exc))
    if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH:
        return _error(400, "malformed_headers", "webhook-id is too long.")
    try:
        fathom_meeting = parse_meeting(json.loads(body))
    except (ValueError, FathomError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        detail = exc.reason if isinstance(exc, FathomError) else "The body is not JSON."
        return _error(400, "malformed_body", detail)

    with transaction.atomic():
        try:
            with transaction.atomic():
                WebhookDelivery.objects.create(account=account, webhook_id=webhook_id)
        except IntegrityError:
            logger.info("Fathom webhook %s for account %s seen before", webhook_id, account.pk)
            return JsonResponse({"status": "duplicate"})
        meeting, created = meeting_upsert(owner=account.user, meeting=fathom_meeting)
        queued = _auto_queue(account, meeting)
    logger.info(
        "Fathom webhook %s: recording %s of user %s %s%s",
        webhook_id,
        fathom_meeting.recording_id,
        account.user_id,
        "imported" if created else "updated",
        ", queued" if queued else "",
    )
    # An indexed delete of the few rows that aged out since the last delivery.
    prune_deliveries()
    return JsonResponse({"status": "imported", "created": created, "queued": queued})
