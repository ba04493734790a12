"""Meetings, the global queue of transfers, and the ordered log of queue events.

Only queue_app.services changes QueueEntry, QueueState and QueueEvent rows.
"""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Meeting(models.Model):
    """A recording in a user's Fathom account, as Fathom describes it."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="meetings"
    )
    recording_id = models.BigIntegerField()
    title = models.CharField(max_length=500, blank=True)
    meeting_title = models.CharField(max_length=500, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    share_url = models.URLField(max_length=1000, blank=True)
    recording_start_time = models.DateTimeField(null=True, blank=True)
    recording_end_time = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    summary = models.TextField(blank=True)
    raw = models.JSONField(default=dict, blank=True)
    # Issue 12: what users filter and read by. Fathom's meeting type name, the call's own
    # link, the recorder's team; the transcript as [{speaker, text, timestamp}].
    meeting_type = models.CharField(max_length=255, blank=True)
    meeting_url = models.URLField(max_length=1000, blank=True)
    team = models.CharField(max_length=255, blank=True, db_index=True)
    transcript = models.JSONField(default=list, blank=True)
    # What the last transfer moved: "video", or "audio" for an audio-only recording.
    media_kind = models.CharField(max_length=8, blank=True)
    # Who may open the share page: anyone with the link, or signed-in users only.
    share_access = models.CharField(
        max_length=16,
        choices=[("anyone", "Anyone with the link"), ("signed_in", "Signed-in users only")],
        default="anyone",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-recording_start_time", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "recording_id"], name="meeting_recording_unique_per_owner"
            )
        ]

    def __str__(self) -> str:
        return self.title or self.meeting_title or f"Recording {self.recording_id}"


class QueueState(models.Model):
    """The single row that every queue mutation locks first.

    Holding it serialises writers, so event sequence numbers follow commit order, and
    `last_seq` hands them out without gaps (a rolled-back transaction rolls it back too).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    paused = models.BooleanField(default=False)
    # Staff's word on why they paused, for the people waiting (cleared on resume).
    pause_note = models.CharField(max_length=500, blank=True)
    last_seq = models.BigIntegerField(default=0)
    # Kept by every service under the lock, so that no change counts or scans the line
    # (queue_app/services/ordering.py): entries by status, and the ordering key's parts.
    waiting = models.PositiveIntegerField(default=0)
    running = models.PositiveIntegerField(default=0)
    retrying = models.PositiveIntegerField(default=0)
    # The next arrival number (the low part of an order key) and the highest round any
    # entry was given (the back of the line is behind it).
    next_arrival = models.BigIntegerField(default=1)
    top_round = models.BigIntegerField(default=0)
    # The round of the latest entry taken from the head of the line: fair share's "now".
    head_round = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="queue_state_singleton")]

    def __str__(self) -> str:
        return "Queue (paused)" if self.paused else "Queue"


class QueueOwner(models.Model):
    """Fair share's counters for one user with entries in the line, kept by the services
    under the queue lock: how many of theirs wait, and the round of their newest."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    waiting = models.PositiveIntegerField(default=0)
    last_round = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"queue share of user {self.owner_id}"


class EntryStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Waiting to retry"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (EntryStatus.QUEUED, EntryStatus.RUNNING, EntryStatus.RETRYING)
FINISHED_STATUSES = (EntryStatus.COMPLETED, EntryStatus.FAILED, EntryStatus.CANCELLED)


class QueueEntry(models.Model):
    """One meeting's place in the global line and the state of its transfer."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="entries")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="queue_entries"
    )
    status = models.CharField(
        max_length=16, choices=EntryStatus.choices, default=EntryStatus.QUEUED
    )
    # Sparse ordering key: lower goes first. (round << 44) + arrival * gap, given at
    # enqueue (services/ordering.py); a move takes a key between two neighbours. No index
    # of its own: every read in key order is of one status, which entry_status_order
    # serves; with one, the planner took it for the head when nearly every row is queued,
    # and stepped over every entry taken before (bench/notes.md, "A claim in one round trip").
    order_key = models.BigIntegerField()
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    stage = models.CharField(max_length=32, blank=True)
    progress = models.FloatField(default=0.0)
    result_url = models.URLField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "queue entries"
        ordering = ["order_key"]
        indexes = [models.Index(fields=["status", "order_key"], name="entry_status_order")]
        constraints = [
            models.UniqueConstraint(
                fields=["meeting"],
                condition=Q(status__in=["queued", "running", "retrying"]),
                name="one_active_entry_per_meeting",
            ),
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1), name="entry_progress_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.meeting} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class AttemptOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    RETRYING = "retrying", "Failed, will retry"
    FAILED = "failed", "Failed for good"
    REQUEUED = "requeued", "Worker lost, back in line"
    CANCELLED = "cancelled", "Cancelled"


class TransferAttempt(models.Model):
    """One try at an entry's transfer, from its claim to its end: kept, so that retrying
    an entry never erases how its earlier attempts went (counts come from here)."""

    entry = models.ForeignKey(QueueEntry, on_delete=models.CASCADE, related_name="attempt_log")
    # The entry's attempt number when claimed (it restarts at 1 after a manual retry).
    number = models.PositiveIntegerField()
    worker = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=16, choices=AttemptOutcome.choices, default=AttemptOutcome.RUNNING
    )
    error_kind = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    bytes_moved = models.BigIntegerField(null=True, blank=True)
    # Fathom's Retry-After for this failure, in seconds, if it gave one.
    retry_after_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [
            models.Index(fields=["outcome", "finished_at"], name="attempt_outcome_finished"),
            models.Index(fields=["entry", "started_at"], name="attempt_entry_started"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.entry_id} ({self.outcome})"


class UpdateType(models.TextChoices):
    MEETING_ADDED = "meeting_added"
    MEETING_REMOVED = "meeting_removed"
    POSITION_UPDATED = "position_updated"
    QUEUE_CLEARED = "queue_cleared"
    QUEUE_PAUSED = "queue_paused"
    QUEUE_RESUMED = "queue_resumed"
    TASK_STARTED = "task_started"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    TASK_RETRIED = "task_retried"


class QueueEvent(models.Model):
    """One change to the queue. `seq` is the event's id on the wire, contiguous from 1.

    `payload` holds the full entries the change touched, as of the change, and `window`
    what moved around them; the realtime layer redacts both per viewer on the way out.
    """

    seq = models.BigIntegerField(primary_key=True)
    update_type = models.CharField(max_length=32, choices=UpdateType.choices)
    entry = models.ForeignKey(
        QueueEntry, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    affected_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    global_position = models.PositiveIntegerField(null=True, blank=True)
    queue_length = models.PositiveIntegerField(default=0)
    paused = models.BooleanField(default=False)
    payload = models.JSONField(default=list)
    # What viewers' windows need besides the entries (protocol version 2, events.py): each
    # entry's status and position before the change, the places removed and inserted, the
    # entries that moved up into the head of the line, and the line's length after.
    window = models.JSONField(default=dict)
    # Given by changes.record (the same instant as the change's Activity rows, written
    # before the event so that the event carries their ids in one INSERT); now otherwise.
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.update_type}"


# --- Fathom accounts and webhook deliveries (written through queue_app.accounts) ------------


def new_webhook_token() -> str:
    """An opaque, unguessable name for an account in its webhook URL."""
    return secrets.token_urlsafe(24)


class FathomAccount(models.Model):
    """A user's connection to Fathom: their API key, encrypted, and import settings.

    The key and the webhook secret are Fernet tokens (queue_app.crypto); only the key's
    last four characters are kept in clear, to show which key is connected.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="fathom_account"
    )
    api_key_encrypted = models.TextField(editable=False)
    api_key_last4 = models.CharField(max_length=4, editable=False)
    auto_queue = models.BooleanField(
        default=False, help_text="Queue each meeting that Fathom's webhook announces."
    )
    # Names the account in POST /webhooks/fathom?account=<token>; the delivery is then
    # verified with this account's own secret. Not a secret itself: the signature is.
    webhook_token = models.CharField(max_length=64, unique=True, default=new_webhook_token)
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    # The webhook registered in Fathom for this account (POST /webhooks), deleted with it;
    # blank when registration was refused (webhook_error says why) or the route is manual.
    fathom_webhook_id = models.CharField(max_length=255, blank=True, editable=False)
    webhook_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Fathom account of user {self.user_id}"


class WebhookDelivery(models.Model):
    """A webhook delivery already handled, by its `webhook-id`: a redelivery is ignored."""

    account = models.ForeignKey(FathomAccount, on_delete=models.CASCADE, related_name="+")
    webhook_id = models.CharField(max_length=255)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "webhook_id"], name="webhook_delivery_unique_per_account"
            )
        ]

    def __str__(self) -> str:
        return self.webhook_id


# --- what happened to a user's entries (written with the change, by services.activity) ------


class ActivityKind(models.TextChoices):
    COMPLETED = "completed", "Transferred"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    MOVED = "moved", "Moved"
    RETRIED = "retried", "Back in line"
    RETRYING = "retrying", "Attempt failed, trying again"


class ActivityBy(models.TextChoices):
    OWNER = "owner", "You"
    STAFF = "staff", "Staff"
    SYSTEM = "system", "fathomloom"


class Activity(models.Model):
    """One outcome of a user's queue entry, kept after the entry leaves the line: the
    history the Queue page, My meetings and GET /api/activity show. Written in the same
    transaction as the change (services.changes.record), so it never disagrees with it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="activity"
    )
    entry = models.ForeignKey(
        QueueEntry, on_delete=models.SET_NULL, null=True, blank=True, related_name="activity"
    )
    meeting = models.ForeignKey(
        Meeting, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The meeting's title as of the change: the history reads well after a meeting is gone.
    title = models.CharField(max_length=500)
    kind = models.CharField(max_length=16, choices=ActivityKind.choices)
    by = models.CharField(max_length=8, choices=ActivityBy.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    note = models.TextField(blank=True)
    reason = models.TextField(blank=True)
    result_url = models.URLField(max_length=1000, blank=True)
    position = models.PositiveIntegerField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    seq = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "activity"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="activity_user_newest")]

    def __str__(self) -> str:
        return f"{self.title}: {self.kind}"
