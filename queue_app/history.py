"""Reads of the activity history (the selectors of Activity rows): a user's own, newest
first, as the API, the Queue page and My meetings show them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from queue_app.events import isoformat
from queue_app.models import Activity, ActivityKind

# The Queue page's "Done and failed" section: outcomes that end an entry's run.
DONE_KINDS = (ActivityKind.COMPLETED, ActivityKind.FAILED, ActivityKind.CANCELLED)


def activity_for(*, user: Any, username: str | None = None) -> QuerySet[Activity]:
    """The history `user` may read, newest first: their own; staff's own too, unless they
    name another user by `username` (staff only: anyone else gets only their own)."""
    rows = Activity.objects.select_related("actor", "user").order_by("-created_at", "-id")
    if user.is_staff and username:
        owner = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username})
        return rows.filter(user__in=owner)
    return rows.filter(user_id=user.pk)


def activity_item(row: Activity, *, staff: bool) -> dict[str, Any]:
    """One Activity as the API sends it; who acted, by name, only to staff."""
    item = {
        "id": row.pk,
        "kind": row.kind,
        "by": row.by,
        "actor": row.actor.get_username() if staff and row.actor_id else None,
        "title": row.title,
        "entry_id": str(row.entry_id) if row.entry_id else None,
        "meeting_id": row.meeting_id,
        "note": row.note,
        "reason": row.reason,
        "result_url": row.result_url,
        "position": row.position,
        "next_attempt_at": isoformat(row.next_attempt_at),
        "seq": row.seq,
        "created_at": isoformat(row.created_at),
    }
    if staff:
        item["user"] = row.user.get_username()
    return item


def recent_activity(*, user: Any, limit: int = 20, kinds: tuple[str, ...] | None = None) -> list:
    """The newest `limit` items of the user's own history (of `kinds`, if given), as the
    pages render them into their HTML."""
    rows = activity_for(user=user)
    if kinds is not None:
        rows = rows.filter(kind__in=kinds)
    return [activity_item(row, staff=False) for row in rows[:limit]]
