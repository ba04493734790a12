"""Fathom's webhook: Standard Webhooks signature checks, and the endpoint that verifies a
delivery and hands it to queue_app.importing (which stores it, imports the meeting and,
with auto-queue on, queues it).

A delivery names its account in the URL (`/webhooks/fathom?account=<webhook_token>`) and
is verified with that account's own secret; see docs/credentials.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables

from queue_app import download_callbacks
from queue_app.accounts import fathom_account_by_webhook_token, webhook_secret_of
from queue_app.api.errors import error_response, hide_secrets_in_debug
from queue_app.crypto import CredentialDecryptError
from queue_app.errors import (
    DeliveryTooLarge,
    InvalidSignature,
    MalformedBody,
    MalformedHeaders,
    MethodNotAllowed,
    MissingHeaders,
    StaleTimestamp,
    WebhookVerificationError,
)
from queue_app.importing import (
    download_callback_accept,
    meeting_of_owner_exists,
    webhook_delivery_import,
)
from queue_app.integrations.fathom import FathomError, parse_download_status, parse_meeting
from queue_app.integrations.fathom.parsing import parse_json
from queue_app.models import FathomAccount, WebhookDelivery

logger = logging.getLogger(__name__)

# Standard Webhooks' tolerance: a delivery signed more than this far from our clock is
# refused, so a captured delivery cannot be replayed later (its id may be pruned by then).
TOLERANCE_SECONDS = 5 * 60
MAX_WEBHOOK_ID_LENGTH = WebhookDelivery._meta.get_field("webhook_id").max_length
# What new_webhook_token makes (token_urlsafe); anything else names no account, and is not
# looked up (PostgreSQL refuses a NUL in a query parameter with an error, not a miss).
WEBHOOK_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


# Every local of these, and of what they call (hmac names the key `key`), is hidden from
# error reports.
@sensitive_variables()
def sign(*, secret: bytes, webhook_id: str, timestamp: str | int, body: bytes) -> str:
    """The `v1,<base64>` signature of a delivery (HMAC-SHA256 over `id.timestamp.body`)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@sensitive_variables()
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
    # At most 19 digits (a 64-bit time): int() of thousands of digits raises ValueError.
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 19:
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


def _verified(
    request: HttpRequest, *, max_bytes: int | None = None
) -> tuple[FathomAccount, str, bytes] | JsonResponse:
    """(account, webhook-id, body) of a POST signed with the account's webhook secret, or
    the refusal to answer. Nothing is written before this returns."""
    if request.method != "POST":
        response = error_response(MethodNotAllowed("Only POST is accepted."))
        response["Allow"] = "POST"
        return response
    if max_bytes is not None:
        # Refused unread when it says it is too big; read, when it was.
        announced = request.META.get("CONTENT_LENGTH") or "0"
        if not announced.isdigit() or int(announced) > max_bytes:
            return error_response(DeliveryTooLarge())
    try:
        body = request.body
    except RequestDataTooBig:
        return error_response(DeliveryTooLarge())
    if max_bytes is not None and len(body) > max_bytes:
        return error_response(DeliveryTooLarge())
    webhook_id = request.headers.get("webhook-id", "")
    token = request.GET.get("account", "")
    account = fathom_account_by_webhook_token(token) if WEBHOOK_TOKEN.fullmatch(token) else None
    try:
        secret = webhook_secret_of(account) if account is not None else None
    except CredentialDecryptError:
        logger.error("webhook secret of Fathom account %s cannot be decrypted", account.pk)
        secret = None
    if secret is None:
        # The same answer as a bad signature: the URL alone must not tell which
        # accounts exist or have a webhook set up.
        return error_response(InvalidSignature("Unknown account, or no webhook secret set."))
    try:
        verify(
            secret=secret,
            webhook_id=webhook_id,
            timestamp=request.headers.get("webhook-timestamp", ""),
            signature=request.headers.get("webhook-signature", ""),
            body=body,
        )
    except WebhookVerificationError as exc:
        logger.warning("Fathom POST for account %s refused: %s", account.pk, exc.code)
        return error_response(exc)
    if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH:
        return error_response(MalformedHeaders("webhook-id is too long."))
    if not (webhook_id.isascii() and webhook_id.isprintable()):
        # Standard Webhooks ids are printable ASCII; a NUL would fail the insert instead.
        return error_response(MalformedHeaders("webhook-id must be printable ASCII."))
    return account, webhook_id, body


@csrf_exempt  # Fathom cannot send a CSRF token; the signature authenticates instead.
@hide_secrets_in_debug  # with DEBUG on too (`make run`)
@sensitive_variables("secret")  # a 500 page or error mail would show the signing key
def fathom_webhook(request: HttpRequest) -> JsonResponse:
    """POST /webhooks/fathom?account=<token>: one Fathom delivery.

    A signed delivery whose body is not a Fathom meeting we can store is refused whole (400
    `malformed_body`) before anything is written, its webhook-id included: a corrected
    redelivery with the same id is then imported, not taken for a duplicate.
    """
    verified = _verified(request)
    if isinstance(verified, JsonResponse):
        return verified
    account, webhook_id, body = verified
    try:
        # Bounded before anything touches the database: see parsing.parse_json/parse_meeting.
        fathom_meeting = parse_meeting(parse_json(body, "webhook delivery"))
    except FathomError as exc:
        logger.warning("Fathom webhook for account %s refused: %s", account.pk, exc.reason)
        return error_response(MalformedBody(exc.reason))

    outcome = webhook_delivery_import(
        account=account, webhook_id=webhook_id, meeting=fathom_meeting
    )
    if outcome.duplicate:
        return JsonResponse({"status": "duplicate"})
    return JsonResponse(
        {"status": "imported", "created": outcome.created, "queued": outcome.queued}
    )


@csrf_exempt  # Fathom cannot send a CSRF token; the signature authenticates instead.
@hide_secrets_in_debug
@sensitive_variables("secret")
def fathom_download_callback(request: HttpRequest) -> JsonResponse:
    """POST /webhooks/fathom/download?account=<token>: a finished download Fathom POSTs to
    the `destination_url` a transfer gave it (docs/credentials.md).

    Verified like a webhook delivery, with the account's webhook secret; at most
    MAX_CALLBACK_BYTES; once per `webhook-id`; only for a recording of the account's user.
    Then handed to the transfer waiting for it (download_callbacks).
    """
    verified = _verified(request, max_bytes=download_callbacks.MAX_CALLBACK_BYTES)
    if isinstance(verified, JsonResponse):
        return verified
    account, webhook_id, body = verified
    try:
        status = parse_download_status(parse_json(body, "download callback"))
    except FathomError as exc:
        logger.warning("Fathom callback for account %s refused: %s", account.pk, exc.reason)
        return error_response(MalformedBody(exc.reason))
    if status.recording_id is None or not meeting_of_owner_exists(
        owner_id=account.user_id, recording_id=status.recording_id
    ):
        return error_response(MalformedBody("The download is not of one of your recordings."))
    outcome = download_callback_accept(
        account=account, webhook_id=webhook_id, download_id=status.download_id, body=body
    )
    return JsonResponse({"status": outcome})
