"""The event schema on the wire, its redaction per viewer, and publishing after commit.

An event is built once, in full, by queue_app.services and stored as a QueueEvent.
What a socket or an API client receives is `event_for_viewer(...)` of it: full entries
for their owner and for staff, anonymous places for everyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from queue_app.models import QueueEntry, QueueEvent

QUEUE_GROUP = "queue"
# Fields of an entry that anyone may see; everything else is for its owner and staff.
PUBLIC_ENTRY_FIELDS = ("id", "position", "status")


@dataclass(frozen=True)
class Viewer:
    """Who is looking: decides which entries arrive in full."""

    user_id: int | None
    is_staff: bool = False

    @classmethod
    def of(cls, user: Any) -> Viewer:
        if user is None or not user.is_authenticated:
            return cls(user_id=None, is_staff=False)
        return cls(user_id=user.pk, is_staff=bool(user.is_staff))

    def sees_in_full(self, owner_id: str | int | None) -> bool:
        if self.is_staff:
            return True
        return self.user_id is not None and str(self.user_id) == str(owner_id)


def isoformat(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def entry_payload(entry: QueueEntry, position: int | None) -> dict[str, Any]:
    """The full description of an entry, as its owner and staff see it."""
    meeting = entry.meeting
    return {
        "id": str(entry.id),
        "position": position,
        "status": entry.status,
        "meeting_id": meeting.pk,
        "recording_id": meeting.recording_id,
        "title": str(meeting),
        "owner_id": str(entry.owner_id),
        "owner": entry.owner.get_username(),
        "attempts": entry.attempts,
        "max_attempts": entry.max_attempts,
        "last_error": entry.last_error,
        "stage": entry.stage,
        "progress": entry.progress,
        "result_url": entry.result_url,
        "worker": entry.worker,
        "created_at": isoformat(entry.created_at),
        "started_at": isoformat(entry.started_at),
        "finished_at": isoformat(entry.finished_at),
        "next_attempt_at": isoformat(entry.next_attempt_at),
    }


def entry_for_viewer(entry: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    if viewer.sees_in_full(entry.get("owner_id")):
        return {
            **entry,
            "mine": viewer.user_id is not None and str(viewer.user_id) == entry.get("owner_id"),
        }
    redacted = {field: entry.get(field) for field in PUBLIC_ENTRY_FIELDS}
    redacted["mine"] = False
    return redacted


def event_message(event: QueueEvent) -> dict[str, Any]:
    """The full (unredacted) QueueUpdate for a stored event."""
    return {
        "type": "QueueUpdate",
        "update_type": event.update_type,
        "seq": event.seq,
        "queue": event.payload,
        "affected_user_id": str(event.affected_user_id) if event.affected_user_id else None,
        "global_position": event.global_position,
        "queue_length": event.queue_length,
        "paused": event.paused,
        "timestamp": isoformat(event.created_at),
    }


def event_for_viewer(message: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """Redact a full QueueUpdate for one viewer. Others never learn whose entry moved."""
    affected = message.get("affected_user_id")
    return {
        **message,
        "queue": [entry_for_viewer(entry, viewer) for entry in message["queue"]],
        "affected_user_id": affected if affected and viewer.sees_in_full(affected) else None,
    }


def publish(event: QueueEvent) -> None:
    """Send a committed event to every socket. Called from transaction.on_commit only."""
    from realtime.publisher import publish_to_group

    publish_to_group(QUEUE_GROUP, {"type": "queue.event", "event": event_message(event)})
