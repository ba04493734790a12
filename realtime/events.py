"""The event schema on the wire, its redaction per viewer, and publishing after commit.

An event is built once, in full, by queue_app.services and stored as a QueueEvent.
What a socket or an API client receives is `event_for_viewer(...)` of it: full entries
for their owner and for staff, anonymous places for everyone else.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from queue_app.models import QueueEntry, QueueEvent

QUEUE_GROUP = "queue"
# Messages for some users' sockets only (progress, access revoked). Like the queue group,
# its members are the hubs, one per daphne process, which deliver to the right sockets.
USER_MESSAGES_GROUP = "user-messages"
# ProgressUpdate is coalesced to at most this many messages a second per entry.
PROGRESS_MAX_PER_SECOND = 5
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


def snapshot_for_viewer(snapshot: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """A full QueueSnapshot redacted for one viewer (a new dict; the full one is unchanged)."""
    return {**snapshot, "queue": [entry_for_viewer(entry, viewer) for entry in snapshot["queue"]]}


def publish(event: QueueEvent) -> None:
    """Send a committed event to every socket. Called from transaction.on_commit only."""
    from realtime.publisher import publish_to_group

    publish_to_group(QUEUE_GROUP, {"type": "queue.event", "event": event_message(event)})


class ProgressThrottle:
    """Drops progress ticks that come faster than PROGRESS_MAX_PER_SECOND per entry.

    A new stage and the final tick (1.0) always pass, so nobody is left at 99%.
    """

    def __init__(self, per_second: int = PROGRESS_MAX_PER_SECOND) -> None:
        self.interval = 1.0 / per_second
        self._last: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def allow(self, entry_id: str, stage: str, progress: float) -> bool:
        now = time.monotonic()
        with self._lock:
            sent_at, sent_stage = self._last.get(entry_id, (float("-inf"), ""))
            if stage == sent_stage and progress < 1.0 and now - sent_at < self.interval:
                return False
            self._last[entry_id] = (now, stage)
            if len(self._last) > 10_000:  # forget finished entries now and then
                self._last.clear()
            return True


_progress_throttle = ProgressThrottle()


def publish_progress(
    *, entry_id: UUID | str, owner_id: int, stage: str, progress: float, worker: str = ""
) -> bool:
    """Send a ProgressUpdate to the entry's owner and to staff; False if coalesced away.

    Progress is ephemeral: no seq, not logged. The latest value is in the snapshot.
    """
    from realtime.publisher import publish_to_group

    entry_id = str(entry_id)
    progress = min(max(float(progress), 0.0), 1.0)
    if not _progress_throttle.allow(entry_id, stage, progress):
        return False
    update = {
        "type": "ProgressUpdate",
        "entry_id": entry_id,
        "owner_id": str(owner_id),
        "stage": stage,
        "progress": round(progress, 4),
        "worker": worker,
        "timestamp": isoformat(datetime.now(UTC)),
    }
    publish_to_group(USER_MESSAGES_GROUP, {"type": "progress.update", "update": update})
    return True


def revoke_access(*, user_id: int, credential: str | None = None) -> None:
    """Close the user's sockets opened with `credential` (a fingerprint), or all of them."""
    from realtime.publisher import publish_to_group

    publish_to_group(
        USER_MESSAGES_GROUP,
        {"type": "access.revoked", "user_id": str(user_id), "credential": credential},
    )
