"""A user's Fathom account: connecting an API key (checked with Fathom first), settings,
and the decrypted key for the workers. The only code that reads or writes FathomAccount.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.views.decorators.debug import sensitive_variables

from queue_app import crypto
from queue_app.errors import (
    AccountError,
    FathomBadResponse,
    FathomKeyRejected,
    FathomNotConnected,
    FathomUnreachable,
    InvalidInput,
    InvalidWebhookSecret,
)
from queue_app.integrations.fathom import FathomClient, FathomError
from queue_app.integrations.fathom.ratelimit import RateLimiter
from queue_app.models import FathomAccount

logger = logging.getLogger(__name__)

WEBHOOK_SECRET_PREFIX = "whsec_"
# What the registered webhook fires for: the user's own recordings, those they shared with
# individuals and (Team Plans) with teams: the ones they can download. Fathom refuses the
# team trigger on other plans; registration then falls back to the first alone.
WEBHOOK_TRIGGERS = ("my_recordings", "my_shared_with_team_recordings")

# What Fathom issues: printable ASCII, no spaces. The key becomes an X-Api-Key header, where
# anything else cannot be encoded (a 500) or, a newline, splits the header (a 503). At least
# 8 characters: showing the last four of a shorter key would show most of it.
API_KEY_PATTERN = re.compile(r"\A[!-~]+\Z")
API_KEY_MIN_LENGTH = 8
API_KEY_MAX_LENGTH = 512
API_KEY_FORMAT = "A Fathom API key is printable ASCII without spaces, as Fathom shows it."


# --- errors from Fathom ------------------------------------------------------------------


def _scrub(text: str, secret: str | None) -> str:
    # The client promises reasons without the key; an error message is shown to users and
    # logged, so make sure of it here as well.
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[redacted]")
    return text


@sensitive_variables()
def account_error_from(exc: FathomError, *, api_key: str | None = None) -> AccountError:
    """The AccountError a caller should see for a failed call to Fathom."""
    reason = _scrub(exc.reason, api_key)
    if exc.status in (401, 403):
        return FathomKeyRejected(f"Fathom refused this API key ({reason}); check it in Fathom.")
    if exc.transient:
        return FathomUnreachable(
            f"Fathom cannot be reached just now; try again later. ({reason})",
            retry_after=exc.retry_after,
        )
    return FathomBadResponse(f"Fathom's answer could not be used: {reason}")


# Every local, and every local of what it calls (the client's constructor, crypto).
@sensitive_variables()
def fathom_client_for(api_key: str) -> FathomClient:
    """A Fathom client for `api_key`, at settings.FATHOM_API_BASE_URL.

    It draws on the same Redis token buckets as the workers: Fathom's 60 calls a minute
    are per key, so a sync must not spend what the user's transfers need, nor earn a 429.
    """
    return FathomClient(api_key, limiter=RateLimiter())


# --- reads -----------------------------------------------------------------------------------


def fathom_account_of(user: Any) -> FathomAccount | None:
    """The user's Fathom account, or None if they have not connected one."""
    return FathomAccount.objects.filter(user_id=_user_id(user)).first()


def fathom_account_by_webhook_token(token: str) -> FathomAccount | None:
    """The account a webhook URL names (`?account=<token>`), with its user; None if none."""
    if not token:
        return None
    return FathomAccount.objects.filter(webhook_token=token).select_related("user").first()


def fathom_account_status(user: Any) -> dict[str, Any]:
    """What the user may see of their connection: never the key, only its last four."""
    account = fathom_account_of(user)
    if account is None:
        return {
            "connected": False,
            "last4": None,
            "auto_queue": False,
            "webhook_registered": False,
            "webhook_error": None,
        }
    return {
        "connected": True,
        "last4": f"…{account.api_key_last4}",
        "auto_queue": account.auto_queue,
        "webhook_registered": bool(account.fathom_webhook_id),
        "webhook_error": account.webhook_error or None,
    }


@sensitive_variables()
def fathom_api_key_for(user: Any) -> str | None:
    """The user's Fathom API key in clear, for the workers; None if none is connected.

    `user` is a user or a user id. Raises crypto.CredentialDecryptError when the key it
    was stored with is no longer in CREDENTIAL_ENCRYPTION_KEYS.
    """
    token = (
        FathomAccount.objects.filter(user_id=_user_id(user))
        .values_list("api_key_encrypted", flat=True)
        .first()
    )
    if token is None:
        return None
    api_key = crypto.decrypt(token)
    return api_key


# Every local, and every local of what they call (crypto, base64): the secret passes there.
@sensitive_variables()
def webhook_secret_of(account: FathomAccount) -> bytes | None:
    """The account's webhook signing key (the decoded part of `whsec_...`), or None."""
    if not account.webhook_secret_encrypted:
        return None
    return decode_webhook_secret(crypto.decrypt(account.webhook_secret_encrypted))


@sensitive_variables()
def decode_webhook_secret(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64 of what follows `whsec_`."""
    if secret.startswith(WEBHOOK_SECRET_PREFIX):
        secret = secret[len(WEBHOOK_SECRET_PREFIX) :]
    try:
        key = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidWebhookSecret(
            "The webhook secret must be `whsec_` followed by base64, as Fathom shows it."
        ) from None
    if len(key) < 16:
        raise InvalidWebhookSecret("The webhook secret is too short to be Fathom's.")
    return key


# --- writes ----------------------------------------------------------------------------------


@sensitive_variables()
def check_api_key_format(api_key: str) -> None:
    """Raise InvalidInput (400 `invalid`, on `api_key`) unless `api_key` could be Fathom's.

    The message names no character of the key: error messages are shown and logged.
    """
    if not API_KEY_MIN_LENGTH <= len(api_key) <= API_KEY_MAX_LENGTH:
        message = f"A Fathom API key has {API_KEY_MIN_LENGTH} to {API_KEY_MAX_LENGTH} characters."
    elif not API_KEY_PATTERN.match(api_key):
        message = API_KEY_FORMAT
    else:
        return
    raise InvalidInput(f"api_key: {message}", fields={"api_key": [message]})


@sensitive_variables()
def fathom_account_set_key(
    *, user: Any, api_key: str, client: FathomClient | None = None
) -> FathomAccount:
    """Check `api_key` with Fathom, then store it encrypted (replacing any earlier key).

    Raises InvalidInput for a key Fathom never issues (Fathom is not asked), FathomKeyRejected
    when Fathom refuses it, FathomUnreachable or FathomBadResponse when Fathom cannot say; in
    every case nothing is stored. `client` defaults to a FathomClient for `api_key`.
    """
    api_key = api_key.strip()
    check_api_key_format(api_key)
    own_client = client is None
    if client is None:
        client = fathom_client_for(api_key)
    try:
        try:
            client.check_key()
        except FathomError as exc:
            error = account_error_from(exc, api_key=api_key)
            logger.info("Fathom key for user %s not saved: %s", _user_id(user), error.code)
            raise error from None
        account = _store_key(user, api_key)
        if settings.FATHOM_WEBHOOK_REGISTRATION:
            account = _register_webhook(account, client, api_key=api_key)
    finally:
        if own_client:
            client.close()
    return account


@sensitive_variables()
def _store_key(user: Any, api_key: str) -> FathomAccount:
    """Store the checked key; a webhook registered with an earlier key is deleted first."""
    earlier = fathom_account_of(user)
    if earlier is not None and earlier.fathom_webhook_id:
        _delete_webhook(earlier)
    with transaction.atomic():
        account, created = FathomAccount.objects.select_for_update().get_or_create(
            user_id=_user_id(user),
            defaults={"api_key_encrypted": crypto.encrypt(api_key), "api_key_last4": api_key[-4:]},
        )
        if not created:
            account.api_key_encrypted = crypto.encrypt(api_key)
            account.api_key_last4 = api_key[-4:]
            account.save(update_fields=["api_key_encrypted", "api_key_last4", "updated_at"])
    logger.info(
        "Fathom key for user %s saved (%s)", _user_id(user), "new" if created else "replaced"
    )
    return account


def fathom_webhook_url(account: FathomAccount) -> str:
    """Where Fathom delivers the account's webhooks: PUBLIC_BASE_URL and the account's token."""
    path = reverse("fathom-webhook") + f"?account={account.webhook_token}"
    return settings.PUBLIC_BASE_URL.rstrip("/") + path


@sensitive_variables()
def _register_webhook(
    account: FathomAccount, client: FathomClient, *, api_key: str
) -> FathomAccount:
    """Create the account's webhook in Fathom (POST /webhooks) and keep its id and secret,
    encrypted. A refusal keeps the key connected: the reason is stored in webhook_error and
    the manual route (copy the URL into Fathom, paste its secret here) stays open."""
    url = fathom_webhook_url(account)
    created = None
    error: FathomError | None = None
    for triggers in (WEBHOOK_TRIGGERS, WEBHOOK_TRIGGERS[:1]):
        try:
            created = client.create_webhook(
                url,
                triggered_for=list(triggers),
                include_summary=True,
                include_transcript=True,
            )
            break
        except FathomError as exc:
            error = exc
            if exc.status != 400:  # only a refused trigger is worth a second try
                break
    with transaction.atomic():
        account = FathomAccount.objects.select_for_update().get(pk=account.pk)
        if created is not None:
            account.fathom_webhook_id = created.id
            account.webhook_secret_encrypted = crypto.encrypt(created.secret)
            account.webhook_error = ""
            logger.info("Fathom webhook registered for user %s", account.user_id)
        else:
            assert error is not None
            account.fathom_webhook_id = ""
            account.webhook_error = (
                "Fathom did not register the webhook "
                f"({_scrub(error.reason, api_key)}). Add it in Fathom by hand: copy the "
                "webhook URL shown here into Fathom's API settings, then paste the secret "
                "Fathom shows."
            )
            logger.warning(
                "Fathom webhook for user %s not registered: %s", account.user_id, error.kind
            )
        account.save(
            update_fields=[
                "fathom_webhook_id",
                "webhook_secret_encrypted",
                "webhook_error",
                "updated_at",
            ]
        )
    return account


@sensitive_variables()
def _delete_webhook(account: FathomAccount) -> bool:
    """Delete the account's registered webhook in Fathom (DELETE /webhooks/{id}), with the
    key it was registered with. False when Fathom could not be asked: the webhook then
    stays in Fathom, and its deliveries are refused here (no account, or a new secret)."""
    try:
        api_key = crypto.decrypt(account.api_key_encrypted)
    except crypto.CredentialDecryptError:
        logger.warning("Fathom webhook of user %s not deleted: key unreadable", account.user_id)
        return False
    try:
        with fathom_client_for(api_key) as client:
            client.delete_webhook(account.fathom_webhook_id)
    except FathomError as exc:
        logger.warning("Fathom webhook of user %s not deleted: %s", account.user_id, exc.kind)
        return False
    logger.info("Fathom webhook of user %s deleted", account.user_id)
    return True


def fathom_account_set_auto_queue(*, user: Any, auto_queue: bool) -> FathomAccount:
    """Turn queueing of meetings announced by the webhook on or off."""
    with transaction.atomic():
        account = FathomAccount.objects.select_for_update().filter(user_id=_user_id(user)).first()
        if account is None:
            raise FathomNotConnected("Connect your Fathom account first.")
        account.auto_queue = auto_queue
        account.save(update_fields=["auto_queue", "updated_at"])
    return account


@sensitive_variables()
def fathom_account_set_webhook_secret(*, user: Any, secret: str) -> FathomAccount:
    """Store the `whsec_...` secret Fathom showed for the user's webhook, encrypted."""
    secret = secret.strip()
    # Fathom shows the prefix; decode_webhook_secret also reads bare base64 (older rows).
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise InvalidWebhookSecret(
            "The webhook secret must be `whsec_` followed by base64, as Fathom shows it."
        )
    decode_webhook_secret(secret)  # refuse what could never verify a delivery
    with transaction.atomic():
        account = FathomAccount.objects.select_for_update().filter(user_id=_user_id(user)).first()
        if account is None:
            raise FathomNotConnected("Connect your Fathom account first.")
        account.webhook_secret_encrypted = crypto.encrypt(secret)
        account.save(update_fields=["webhook_secret_encrypted", "updated_at"])
    return account


def fathom_webhook_settings(*, user: Any, absolute_uri: Callable[[str], str]) -> dict[str, Any]:
    """Where Fathom should send the user's webhook (`absolute_uri` makes the path a URL,
    e.g. request.build_absolute_uri), and whether its signing secret is stored."""
    account = fathom_account_of(user)
    if account is None:
        raise FathomNotConnected("Connect your Fathom account first.")
    path = reverse("fathom-webhook") + f"?account={account.webhook_token}"
    return {
        "url": absolute_uri(path),
        "secret_set": bool(account.webhook_secret_encrypted),
        "registered": bool(account.fathom_webhook_id),
        "error": account.webhook_error or None,
    }


def fathom_account_disconnect(*, user: Any) -> bool:
    """Delete the webhook registered in Fathom, then forget the user's key, webhook secret
    and settings. False if none was connected."""
    account = fathom_account_of(user)
    if account is not None and account.fathom_webhook_id:
        _delete_webhook(account)
    deleted, _ = FathomAccount.objects.filter(user_id=_user_id(user)).delete()
    if deleted:
        logger.info("Fathom account of user %s disconnected", _user_id(user))
    return bool(deleted)


def fathom_accounts_rotate_keys() -> tuple[int, list[int]]:
    """Re-encrypt every stored secret with the first CREDENTIAL_ENCRYPTION_KEYS key.

    Returns (accounts re-encrypted, ids of accounts that no configured key decrypts).
    One account per transaction: a concurrent key change waits for its row, not the run.
    """
    rotated, failed = 0, []
    for account_id in FathomAccount.objects.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            account = FathomAccount.objects.select_for_update().filter(pk=account_id).first()
            if account is None:  # disconnected meanwhile
                continue
            try:
                account.api_key_encrypted = crypto.rotate(account.api_key_encrypted)
                if account.webhook_secret_encrypted:
                    account.webhook_secret_encrypted = crypto.rotate(
                        account.webhook_secret_encrypted
                    )
            except crypto.CredentialDecryptError:
                failed.append(account_id)
                continue
            account.save(update_fields=["api_key_encrypted", "webhook_secret_encrypted"])
        rotated += 1
    return rotated, failed


def _user_id(user: Any) -> int:
    return user if isinstance(user, int) else user.pk
