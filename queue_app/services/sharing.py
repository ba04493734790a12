"""Who may open a meeting's share page: its owner's choice (Meeting.share_access)."""

from __future__ import annotations

from queue_app.errors import InvalidInput
from queue_app.models import Meeting

SHARE_ACCESS = ("anyone", "signed_in")


def meeting_set_share_access(*, meeting: Meeting, access: str) -> Meeting:
    """Open the meeting's share link to anyone with it, or to signed-in users only."""
    if access not in SHARE_ACCESS:
        raise InvalidInput(fields={"access": [f"One of: {', '.join(SHARE_ACCESS)}."]})
    if meeting.share_access != access:
        meeting.share_access = access
        meeting.save(update_fields=["share_access", "updated_at"])
    return meeting
