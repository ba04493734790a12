"""Fathom's published response models as JSON Schema, written from the types of
fathom-python 0.0.43 (the newest SDK; generated from Fathom's API description), field for
field: required when the SDK's field has no default, nullable when it is ``Nullable``.
"""

from __future__ import annotations

from typing import Any

TIME = {"type": "string", "format": "date-time", "pattern": r"^\d{4}-\d\d-\d\dT"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
    }


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NUM = {"type": "number"}

FATHOM_USER = obj(
    {"name": STR, "email": STR, "email_domain": STR, "team": nullable(STR)},
)
INVITEE = obj(
    {
        "name": nullable(STR),
        "email": nullable(STR),
        "email_domain": nullable(STR),
        "is_external": BOOL,
    },
    {"matched_speaker_display_name": nullable(STR)},
)
TRANSCRIPT_ITEM = obj(
    {
        "speaker": obj({"display_name": STR}, {"matched_calendar_invitee_email": nullable(STR)}),
        "text": STR,
        "timestamp": {"type": "string", "pattern": r"^\d\d:\d\d:\d\d$"},
    }
)
MEETING_SUMMARY = obj({"template_name": nullable(STR), "markdown_formatted": nullable(STR)})
ACTION_ITEM = obj(
    {
        "description": STR,
        "user_generated": BOOL,
        "completed": BOOL,
        "recording_timestamp": STR,
        "recording_playback_url": STR,
        "assignee": obj({"name": nullable(STR), "email": nullable(STR), "team": nullable(STR)}),
    }
)
HIGHLIGHT = obj(
    {"type": STR, "summary": nullable(STR), "start_time": NUM, "end_time": NUM},
    {"text": STR},
)
CRM_MATCHES = obj(
    {},
    {
        "contacts": {"type": "array"},
        "companies": {"type": "array"},
        "deals": {"type": "array"},
        "error": nullable(STR),
    },
)
MEETING = obj(
    {
        "title": STR,
        "meeting_title": nullable(STR),
        "meeting_type": nullable(STR),
        "recording_id": INT,
        "url": STR,
        "share_url": STR,
        "created_at": TIME,
        "scheduled_start_time": TIME,
        "scheduled_end_time": TIME,
        "recording_start_time": TIME,
        "recording_end_time": TIME,
        "calendar_invitees_domains_type": {"enum": ["only_internal", "one_or_more_external"]},
        "shared_with": {"enum": ["no_teams", "single_team", "multiple_teams", "all_teams"]},
        "transcript_language": STR,
        "calendar_invitees": {"type": "array", "items": INVITEE},
        "recorded_by": FATHOM_USER,
    },
    {
        "meeting_url": nullable(STR),
        "transcript": nullable({"type": "array", "items": TRANSCRIPT_ITEM}),
        "default_summary": nullable(MEETING_SUMMARY),
        "action_items": nullable({"type": "array", "items": ACTION_ITEM}),
        "highlights": nullable({"type": "array", "items": HIGHLIGHT}),
        "crm_matches": nullable(CRM_MATCHES),
    },
)


def list_response(item: dict[str, Any], *, limit_nullable: bool) -> dict[str, Any]:
    return obj(
        {
            "limit": nullable(INT) if limit_nullable else INT,
            "next_cursor": nullable(STR),
            "items": {"type": "array", "items": item},
        }
    )


MEETING_LIST = list_response(MEETING, limit_nullable=True)
TEAM_LIST = list_response(obj({"name": STR, "created_at": TIME}), limit_nullable=False)
TEAM_MEMBER_LIST = list_response(
    obj({"name": STR, "email": STR, "created_at": TIME}), limit_nullable=False
)
MEETING_TYPE_LIST = list_response(
    obj({"name": STR, "status": {"enum": ["active", "inactive"]}, "created_at": TIME}),
    limit_nullable=True,
)
DOWNLOAD_FILE = obj({"url": STR, "content_type": STR, "file_size_bytes": INT, "expires_at": TIME})
RECORDING_DOWNLOAD = {
    **obj(
        {
            "download_id": STR,
            "recording_id": INT,
            "status": {"enum": ["processing", "completed", "failed", "expired"]},
        },
        {
            "video": DOWNLOAD_FILE,
            "audio": DOWNLOAD_FILE,
            "failure_reason": {"enum": ["generation_failed", "generation_timeout"]},
        },
    ),
    "additionalProperties": False,
}
WEBHOOK = obj(
    {
        "id": STR,
        "url": STR,
        "secret": STR,
        "created_at": TIME,
        "include_transcript": BOOL,
        "include_crm_matches": BOOL,
        "include_summary": BOOL,
        "include_action_items": BOOL,
        "triggered_for": {
            "type": "array",
            "items": {
                "enum": [
                    "my_recordings",
                    "shared_external_recordings",
                    "my_shared_with_team_recordings",
                    "shared_team_recordings",
                ]
            },
        },
    }
)
SUMMARY_RESPONSE = obj({"summary": nullable(MEETING_SUMMARY)})
TRANSCRIPT_RESPONSE = obj({"transcript": {"type": "array", "items": TRANSCRIPT_ITEM}})
CALLBACK_RESPONSE = obj({"destination_url": STR})
