"""Sample meetings the sandbox starts with, and the builder tests use to add their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MEDIA_DIR = Path(__file__).resolve().parent / "media"
MEDIA_FILES = ("recording-1.mp4", "recording-2.mp4", "recording-3.mp4")

# Two users, each with more meetings than one default page (5) holds, so listing pages.
SEED_USERS: dict[str, dict[str, Any]] = {
    "sandbox-key-alice": {
        "name": "Alice Johnson",
        "email": "alice@acme.example",
        "first_recording_id": 1001,
        "count": 12,
        "teams": ("Sales", "Engineering"),
    },
    "sandbox-key-bob": {
        "name": "Bob Smith",
        "email": "bob@acme.example",
        "first_recording_id": 2001,
        "count": 7,
        "teams": ("Marketing",),
    },
}

_TOPICS = (
    "Quarterly business review",
    "Weekly sync",
    "Customer onboarding call",
    "Roadmap planning",
    "Incident retrospective",
    "Design review",
    "Hiring debrief",
    "Pricing discussion",
)

# A team's own meeting types (Fathom's /meeting_types); None: no type assigned.
_MEETING_TYPES = ("Customer call", "Internal sync", None)
_SHARED_WITH = ("no_teams", "single_team", "multiple_teams", "all_teams")

_BASE_TIME = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_meeting(
    recording_id: int,
    *,
    recorder_name: str = "Sandbox User",
    recorder_email: str = "user@sandbox.example",
    team: str | None = None,
    title: str | None = None,
    created_at: datetime | None = None,
    duration_minutes: int = 30,
    media: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A meeting in the shape of Fathom's ``GET /meetings`` items, with every include filled.

    The sandbox strips transcript, summary, action items and CRM matches unless asked for.
    ``media`` names the file under ``media/`` served as the recording's video.
    """
    start = created_at - timedelta(minutes=duration_minutes) if created_at else None
    if start is None:
        start = _BASE_TIME + timedelta(hours=recording_id % 997)
    end = start + timedelta(minutes=duration_minutes)
    created = created_at or end + timedelta(seconds=42)
    title = title or f"{_TOPICS[recording_id % len(_TOPICS)]} #{recording_id}"
    share = f"sb{recording_id}"
    meeting_type = _MEETING_TYPES[recording_id % len(_MEETING_TYPES)]
    # Customer calls have a guest from outside the recorder's company.
    external = meeting_type == "Customer call"
    invitees = [
        {
            "name": recorder_name,
            "matched_speaker_display_name": recorder_name,
            "email": recorder_email,
            "email_domain": recorder_email.rpartition("@")[2],
            "is_external": False,
        }
    ]
    if external:
        invitees.append(
            {
                "name": "Casey Client",
                "matched_speaker_display_name": "Casey Client",
                "email": "casey@client.example",
                "email_domain": "client.example",
                "is_external": True,
            }
        )
    meeting: dict[str, Any] = {
        "title": title,
        "meeting_title": title,
        "meeting_type": meeting_type,
        "recording_id": recording_id,
        "url": f"https://fathom.video/calls/{recording_id}",
        "share_url": f"https://fathom.video/share/{share}",
        "created_at": _iso(created),
        "scheduled_start_time": _iso(start.replace(minute=0, second=0)),
        "scheduled_end_time": _iso(start.replace(minute=0, second=0) + timedelta(hours=1)),
        "recording_start_time": _iso(start),
        "recording_end_time": _iso(end),
        "calendar_invitees_domains_type": "one_or_more_external" if external else "only_internal",
        "shared_with": _SHARED_WITH[recording_id % len(_SHARED_WITH)],
        "transcript_language": "en",
        "meeting_url": f"https://meet.example/sandbox-{recording_id}",
        "calendar_invitees": invitees,
        "recorded_by": {
            "name": recorder_name,
            "email": recorder_email,
            "email_domain": recorder_email.rpartition("@")[2],
            "team": team,
        },
        "transcript": [
            {
                "speaker": {
                    "display_name": recorder_name,
                    "matched_calendar_invitee_email": recorder_email,
                },
                "text": f"Welcome to {title}.",
                "timestamp": "00:00:05",
            }
        ],
        "default_summary": {
            "template_name": "general",
            "markdown_formatted": f"## Summary\n\n{title}: decisions made, owners named.\n",
        },
        "action_items": [
            {
                "description": "Send the follow-up notes",
                "user_generated": False,
                "completed": False,
                "recording_timestamp": "00:10:00",
                "recording_playback_url": f"https://fathom.video/calls/{recording_id}?t=600",
                "assignee": {"name": recorder_name, "email": recorder_email, "team": team},
            }
        ],
        "highlights": [
            {
                "type": "bookmark",
                "summary": "Decision",
                "start_time": 120.0,
                "end_time": 135.5,
                "text": "We ship on Friday.",
            }
        ],
        "crm_matches": {"contacts": [], "companies": [], "deals": [], "error": None},
        # Not part of Fathom's answer: which file the sandbox serves; removed before sending.
        "_media": media or MEDIA_FILES[recording_id % len(MEDIA_FILES)],
    }
    meeting.update(overrides)
    return meeting


def seed_meetings() -> dict[str, list[dict[str, Any]]]:
    """The sample data: API key -> meetings, newest first as Fathom lists them."""
    seeded: dict[str, list[dict[str, Any]]] = {}
    for api_key, user in SEED_USERS.items():
        meetings = []
        for index in range(user["count"]):
            recording_id = user["first_recording_id"] + index
            created = _BASE_TIME + timedelta(days=index, hours=1)
            meetings.append(
                build_meeting(
                    recording_id,
                    recorder_name=user["name"],
                    recorder_email=user["email"],
                    team=user["teams"][index % len(user["teams"])],
                    created_at=created,
                )
            )
        meetings.sort(key=lambda m: m["created_at"], reverse=True)
        seeded[api_key] = meetings
    return seeded
