"""Importing meetings from Fathom: one meeting (webhook) or all of a user's (sync).

A meeting is keyed by (owner, recording_id), so importing the same one again updates it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from queue_app import accounts, download_callbacks, errors
from queue_app.integrations.fathom import FathomError, FathomMeeting
from queue_app.models import FathomAccount, Meeting, QueueEntry, WebhookDelivery
from queue_app.services import line

if TYPE_CHECKING:
    from queue_app.integrations.fathom import FathomClient

logger = logging.getLogger(__name__)

# Column sizes of Meeting; PostgreSQL refuses a longer value, so a long title is cut and
# a URL too long to store whole is left out (a cut URL would point somewhere else).
TITLE_LENGTH = Meeting._meta.get_field("title").max_length
NAME_LENGTH = Meeting._meta.get_field("team").max_length
URL_LENGTH = Meeting._meta.get_field("url").max_length
# Pages link to a meeting's URL: only an absolute http(s) URL without spaces or control
# characters is kept (a `javascript:` URL there would run in our origin).
STORABLE_URL = re.compile(r"https?://[!-~]+", re.IGNORECASE)
# No recording runs a week: a longer span means wrong times, so the duration is left unknown
# (it also keeps duration_seconds far inside its PositiveIntegerField).
MAX_DURATION = timedelta(days=7)
# Seen webhook-ids are kept this long. Retries carry the same id with a fresh timestamp;
# Standard Webhooks senders (Svix's schedule) retry for about 28 hours, so a week covers them.
DELIVERY_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class SyncResult:
    """What a sync did: meetings new to us, changed, and seen again unchanged."""

    created: int
    updated: int
    unchanged: int = 0


def _aware(value: datetime | None) -> datetime | None:
    # Fathom's times carry an offset; one without is taken as UTC, as Fathom documents.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _storable_url(url: str) -> str:
    return url if len(url) <= URL_LENGTH and STORABLE_URL.fullmatch(url) else ""


def _fields_of(meeting: FathomMeeting) -> dict[str, Any]:
    # parse_meeting has bounded the values already (times between 1970 and 2100, strings a
    # database stores); here they are fitted to Meeting's columns.
    start, end = _aware(meeting.recording_start_time), _aware(meeting.recording_end_time)
    duration = None
    if start is not None and end is not None and timedelta(0) <= end - start <= MAX_DURATION:
        duration = int((end - start).total_seconds())
    fields: dict[str, Any] = {
        "title": meeting.title[:TITLE_LENGTH],
        "meeting_title": meeting.meeting_title[:TITLE_LENGTH],
        "url": _storable_url(meeting.url),
        "share_url": _storable_url(meeting.share_url),
        "recording_start_time": start,
        "recording_end_time": end,
        "duration_seconds": duration,
        "summary": meeting.summary,
        "raw": meeting.raw,
        "meeting_type": meeting.meeting_type[:NAME_LENGTH],
        "meeting_url": _storable_url(meeting.meeting_url),
        "team": meeting.team[:NAME_LENGTH],
    }
    if meeting.transcript is not None:
        # Only when Fathom sent one: a listing without include_transcript keeps what we have.
        fields["transcript"] = meeting.transcript
    return fields


def _upsert(owner: Any, meeting: FathomMeeting) -> tuple[Meeting, str]:
    """Create or update the owner's meeting; 'created', 'updated' or 'unchanged'."""
    fields = _fields_of(meeting)
    with transaction.atomic():
        # get_or_create re-reads after an IntegrityError, so a webhook and a sync
        # importing the same recording at once end with one row.
        row, created = Meeting.objects.select_for_update().get_or_create(
            owner=owner, recording_id=meeting.recording_id, defaults=fields
        )
        if created:
            return row, "created"
        changed = [name for name, value in fields.items() if getattr(row, name) != value]
        if not changed:
            return row, "unchanged"
        for name in changed:
            setattr(row, name, fields[name])
        row.save(update_fields=[*changed, "updated_at"])
    return row, "updated"


def meeting_set_media_kind(*, meeting: Meeting, media_kind: str) -> None:
    """Record what a transfer moves of the meeting: "video", or "audio" when Fathom has
    only the audio of it."""
    if meeting.media_kind != media_kind:
        meeting.media_kind = media_kind
        Meeting.objects.filter(pk=meeting.pk).update(media_kind=media_kind)


def meeting_upsert(*, owner: Any, meeting: FathomMeeting) -> tuple[Meeting, bool]:
    """Store a meeting as Fathom describes it for `owner`. Returns (meeting, created)."""
    row, outcome = _upsert(owner, meeting)
    return row, outcome == "created"


@sensitive_variables("api_key")
def meetings_sync(*, user: Any, client: FathomClient | None = None) -> SyncResult:
    """Import every meeting of the user's Fathom account (all pages); safe to repeat.

    Every page is fetched before anything is written, and the writes are one transaction,
    so a sync that fails (FathomNotConnected, FathomKeyRejected, FathomUnreachable,
    FathomBadResponse from queue_app.accounts) changes nothing. Nothing is queued.
    """
    api_key = None
    own_client = client is None
    if client is None:
        api_key = accounts.fathom_api_key_for(user)
        if api_key is None:
            raise accounts.FathomNotConnected("Connect your Fathom account first.")
        client = accounts.fathom_client_for(api_key)
    try:
        meetings = list(client.iter_meetings(include_summary=True, include_transcript=True))
    except FathomError as exc:
        raise accounts.account_error_from(exc, api_key=api_key) from None
    finally:
        if own_client:
            client.close()
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    with transaction.atomic():
        for meeting in meetings:
            _, outcome = _upsert(user, meeting)
            counts[outcome] += 1
    result = SyncResult(**counts)
    logger.info(
        "Fathom sync for user %s: %d new, %d updated, %d unchanged",
        user.pk,
        result.created,
        result.updated,
        result.unchanged,
    )
    return result


# --- webhook deliveries ------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryImport:
    """What a webhook delivery did: nothing (seen before), or the meeting imported
    (`created` if new to us) and, with auto-queue on, `queued`."""

    duplicate: bool
    created: bool = False
    queued: bool = False


def webhook_delivery_import(
    *, account: FathomAccount, webhook_id: str, meeting: FathomMeeting
) -> DeliveryImport:
    """Import the meeting a verified delivery announces, once per `webhook-id`.

    One transaction: the delivery's id, the meeting and (with the account's auto-queue
    on) its queue entry are stored together or not at all.
    """
    with transaction.atomic():
        try:
            with transaction.atomic():
                WebhookDelivery.objects.create(account=account, webhook_id=webhook_id)
        except IntegrityError:
            logger.info("Fathom webhook %s for account %s seen before", webhook_id, account.pk)
            return DeliveryImport(duplicate=True)
        row, created = meeting_upsert(owner=account.user, meeting=meeting)
        queued = _auto_queue(account, row)
    logger.info(
        "Fathom webhook %s: recording %s of user %s %s%s",
        webhook_id,
        meeting.recording_id,
        account.user_id,
        "imported" if created else "updated",
        ", queued" if queued else "",
    )
    # An indexed delete of the few rows that aged out since the last delivery.
    deliveries_prune()
    return DeliveryImport(duplicate=False, created=created, queued=queued)


def _auto_queue(account: FathomAccount, meeting: Meeting) -> bool:
    """Queue the meeting if its owner asked for it and it was never queued before.

    Never-queued, not merely not-in-line: a second announcement of a meeting already
    transferred (a new webhook-id, or one pruned) must not transfer it again.
    """
    if not account.auto_queue or QueueEntry.objects.filter(meeting=meeting).exists():
        return False
    try:
        line.entry_enqueue(meeting=meeting)
    except errors.AlreadyQueued:  # queued by its owner a moment ago: as good
        return False
    return True


def meeting_of_owner_exists(*, owner_id: int, recording_id: int) -> bool:
    """Whether the user has imported this recording (a callback must be about one)."""
    return Meeting.objects.filter(owner_id=owner_id, recording_id=recording_id).exists()


def download_callback_accept(
    *, account: FathomAccount, webhook_id: str, download_id: str, body: bytes
) -> str:
    """Hand a verified download callback to the transfer waiting for it, once per
    `webhook-id`: "received", or "duplicate" for one seen before.

    The id is stored with the webhook deliveries' (the same retention): if Redis cannot
    take the callback, the id is not kept either, and Fathom's retry is accepted.
    """
    with transaction.atomic():
        try:
            with transaction.atomic():
                WebhookDelivery.objects.create(account=account, webhook_id=webhook_id)
        except IntegrityError:
            return "duplicate"
        download_callbacks.callback_post(account_id=account.pk, download_id=download_id, body=body)
    logger.info("Fathom download callback %s for account %s received", webhook_id, account.pk)
    return "received"


def deliveries_prune(*, older_than: timedelta = DELIVERY_RETENTION) -> int:
    """Forget webhook-ids seen before `older_than` ago. Returns how many were forgotten."""
    deleted, _ = WebhookDelivery.objects.filter(
        received_at__lt=timezone.now() - older_than
    ).delete()
    return deleted
