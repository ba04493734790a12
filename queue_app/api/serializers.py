"""Input serializers check the shape and types of requests; output serializers describe
the responses for the OpenAPI schema (entries and events are the wire contract's dicts).
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from queue_app import events
from queue_app.models import ACTIVE_STATUSES, ActivityBy, ActivityKind, AttemptOutcome
from queue_app.selectors import MEETING_STATES, meeting_state
from queue_app.services.activity import MAX_NOTE_LENGTH

# Ids are PostgreSQL bigints; anything larger cannot name a row, so it is bad input.
MAX_BIGINT = 2**63 - 1
EVENTS_PAGE_SIZE = 100
EVENTS_MAX_PAGE_SIZE = 500
_DIGITS = re.compile(r"[0-9]{1,30}")


# --- input --------------------------------------------------------------------------------


class TokenObtainInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class MeetingFiltersSerializer(serializers.Serializer):
    """The library's filters: GET /api/meetings' parameters, My meetings' URL, and
    POST /api/queue's `matching`."""

    search = serializers.CharField(
        required=False, max_length=200, help_text="Part of the title, any case."
    )
    state = serializers.ChoiceField(choices=MEETING_STATES, required=False)
    recorded_from = serializers.DateField(required=False, help_text="Recorded on or after.")
    recorded_to = serializers.DateField(required=False, help_text="Recorded on or before.")
    team = serializers.CharField(
        required=False, max_length=200, help_text="The recorder's team, exactly."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("recorded_from"), attrs.get("recorded_to")
        if start and end and start > end:
            raise serializers.ValidationError(
                {"recorded_to": ["Must not be before recorded_from."]}
            )
        return attrs


# The most meetings or entries one bulk request may name (one transaction, one event).
MAX_BULK = 5000


class EnqueueInputSerializer(serializers.Serializer):
    """One meeting (`meeting_id`), several (`meeting_ids`, in the order to queue them), or
    every one of yours `matching` the library's filters (GET /api/meetings' parameters)."""

    meeting_id = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT, required=False)
    meeting_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_BIGINT),
        min_length=1,
        max_length=MAX_BULK,
        required=False,
    )

    matching = MeetingFiltersSerializer(
        required=False, help_text="Every one of your meetings these filters select."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in ("meeting_id", "meeting_ids", "matching") if name in attrs]
        if len(given) != 1:
            raise serializers.ValidationError("Give one of meeting_id, meeting_ids or matching.")
        return attrs


class MatchingInputSerializer(serializers.Serializer):
    """Which entries a bulk change takes, by filter instead of by id (the operator's
    "retry all failed with error kind X", "cancel all of this user's waiting entries")."""

    owner = serializers.CharField(
        max_length=150, required=False, help_text="Their username (users: only their own)."
    )
    error_kind = serializers.CharField(
        max_length=64,
        required=False,
        help_text="Retry only: the kind their last attempt failed with (`fathom_rejected`).",
    )


NOTE_HELP = (
    "Staff only (ignored for your own entries): why, for the owners. It reaches them live,"
    " in their history (GET /api/activity) and, for a cancellation, by email."
)


def note_field() -> serializers.CharField:
    """An optional note from staff to the owners of the entries a change takes."""
    return serializers.CharField(
        max_length=MAX_NOTE_LENGTH, required=False, allow_blank=True, help_text=NOTE_HELP
    )


class NoteInputSerializer(serializers.Serializer):
    """A change that takes nothing but an optional note (cancel one entry, clear)."""

    note = note_field()


class EntryIdsInputSerializer(serializers.Serializer):
    """The entries a bulk change takes: by id (`entry_ids`), or every one `matching`."""

    entry_ids = serializers.ListField(
        child=serializers.CharField(max_length=64),
        min_length=1,
        max_length=MAX_BULK,
        required=False,
    )
    matching = MatchingInputSerializer(required=False)
    note = note_field()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("entry_ids" in attrs) == ("matching" in attrs):
            raise serializers.ValidationError("Give either entry_ids or matching.")
        return attrs


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {"type": "string", "enum": ["top", "bottom"]},
        ]
    }
)
class PositionField(serializers.Field):
    """A place in the line: a whole number from 1 (the front), "top" or "bottom".

    Whether the number is within the line's length is the service's rule (it spans rows).
    """

    default_error_messages = {
        "invalid": 'Position must be a whole number of at least 1, "top" or "bottom".',
    }

    def to_internal_value(self, data: Any) -> int | str:
        if isinstance(data, str):
            if data in ("top", "bottom"):
                return data
            # Form-encoded bodies carry numbers as text; accept plain digits only.
            if _DIGITS.fullmatch(data):
                data = int(data)
        # bool is an int in Python: JSON true must not mean position 1.
        if isinstance(data, bool) or not isinstance(data, int) or data < 1:
            self.fail("invalid")
        return data

    def to_representation(self, value: Any) -> int | str:
        return value


class MoveInputSerializer(serializers.Serializer):
    position = PositionField()
    note = note_field()


class ShareAccessSerializer(serializers.Serializer):
    access = serializers.ChoiceField(
        choices=[("anyone", "Anyone with the link"), ("signed_in", "Signed-in users only")]
    )


class ActivityQuerySerializer(serializers.Serializer):
    user = serializers.CharField(
        max_length=150, required=False, help_text="Staff only: one user's (username)."
    )


class EventsQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, default=0)
    limit = serializers.IntegerField(
        min_value=1, max_value=EVENTS_MAX_PAGE_SIZE, default=EVENTS_PAGE_SIZE
    )


class LineQuerySerializer(serializers.Serializer):
    start = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT, default=1)
    limit = serializers.IntegerField(min_value=1, max_value=500, default=200)


# --- output (documentation of the wire format) --------------------------------------------


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable error code.")
    detail = serializers.CharField(help_text="Human-readable message.")
    fields = serializers.DictField(
        required=False, help_text="Per-field messages, for `invalid` only."
    )


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class ClearResultSerializer(serializers.Serializer):
    cancelled = serializers.IntegerField(help_text="How many waiting entries were cancelled.")


class PauseResultSerializer(serializers.Serializer):
    paused = serializers.BooleanField()
    changed = serializers.BooleanField(help_text="False if the queue was already so.")


class MeetingSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    recording_id = serializers.IntegerField()
    title = serializers.CharField()
    meeting_title = serializers.CharField()
    url = serializers.CharField()
    share_url = serializers.CharField()
    recording_start_time = serializers.DateTimeField(allow_null=True)
    recording_end_time = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.IntegerField(allow_null=True)
    # From Fathom (issue 12): what users filter and read by.
    meeting_type = serializers.CharField(help_text="Fathom's meeting type name, or empty.")
    meeting_url = serializers.CharField(help_text="The call's own link, or empty.")
    team = serializers.CharField(help_text="The recorder's team, or empty.")
    media_kind = serializers.CharField(
        help_text="What the last transfer moved: video, audio (no video), or empty."
    )
    active_entry_id = serializers.UUIDField(allow_null=True)
    active_entry_status = serializers.ChoiceField(
        choices=[(status.value, status.label) for status in ACTIVE_STATUSES], allow_null=True
    )
    state = serializers.SerializerMethodField(
        help_text="From its latest queue entry: " + ", ".join(MEETING_STATES) + "."
    )

    @extend_schema_field({"type": "string", "enum": list(MEETING_STATES)})
    def get_state(self, meeting: Any) -> str:
        return meeting_state(meeting.latest_entry_status)


class MeetingsQuerySerializer(MeetingFiltersSerializer):
    """GET /api/meetings' filters (the page's are `limit` and `offset`)."""


class MeetingPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = MeetingSerializer(many=True)


# The wire format's own schemas (queue_app.events), so the API documents entries, snapshots
# and events exactly as the WebSocket does: one definition, not a second serializer.
ENTRY_SCHEMA = events.ENTRY_SCHEMA
_FULL_ENTRY = events.ENTRY_SCHEMA["oneOf"][0]
ATTEMPT_SCHEMA = {
    "type": "object",
    "required": [
        "number",
        "worker",
        "started_at",
        "finished_at",
        "outcome",
        "error_kind",
        "error",
        "bytes_moved",
        "retry_after_seconds",
    ],
    "properties": {
        "number": {"type": "integer", "minimum": 0},
        "worker": {"type": "string"},
        "started_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "outcome": {"enum": list(AttemptOutcome.values)},
        "error_kind": {"type": "string", "description": "Stable name of the cause."},
        "error": {"type": "string"},
        "bytes_moved": {"type": ["integer", "null"]},
        "retry_after_seconds": {
            "type": ["number", "null"],
            "description": "Fathom's Retry-After for this failure, if it gave one.",
        },
    },
}
# GET /api/queue/{id}: the entry in full (only its owner and staff may ask) and its attempts.
ENTRY_DETAIL_SCHEMA = {
    **_FULL_ENTRY,
    "required": [*_FULL_ENTRY["required"], "attempt_history"],
    "properties": {
        **_FULL_ENTRY["properties"],
        # Beside `attempts`, the entry's count since its last manual retry.
        "attempt_history": {"type": "array", "items": ATTEMPT_SCHEMA},
    },
}


def bulk_result_schema(id_name: str) -> dict[str, Any]:
    """A bulk change's answer: the entries it changed and, per item refused, why."""
    return {
        "type": "object",
        "required": ["entries", "refused"],
        "properties": {
            "entries": {"type": "array", "items": ENTRY_SCHEMA},
            "refused": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [id_name, "code", "detail"],
                    "properties": {
                        id_name: {"type": "string"},
                        "code": {
                            "type": "string",
                            "description": "`not_found`, `not_yours`, `already_queued` or "
                            "`invalid_state`.",
                        },
                        "detail": {"type": "string"},
                    },
                },
            },
        },
    }


QUEUE_SNAPSHOT_SCHEMA = events.inline_entry_schema(events.SCHEMAS["QueueSnapshot"])
EVENTS_PAGE_SCHEMA = {
    "type": "object",
    "required": ["results", "after", "next"],
    "properties": {
        "results": {
            "type": "array",
            "items": events.inline_entry_schema(events.SCHEMAS["QueueUpdate"]),
        },
        "after": {
            "type": "integer",
            "description": "Pass as `after` to get the events after these.",
        },
        "next": {
            "type": ["string", "null"],
            "format": "uri",
            "description": "The next page, or null if none yet.",
        },
    },
}


ACTIVITY_SCHEMA = {
    "type": "object",
    "required": [
        "id",
        "kind",
        "by",
        "actor",
        "title",
        "entry_id",
        "meeting_id",
        "note",
        "reason",
        "result_url",
        "position",
        "next_attempt_at",
        "seq",
        "created_at",
    ],
    "properties": {
        "id": {"type": "integer"},
        "kind": {
            "enum": list(ActivityKind.values),
            "description": "completed (with `result_url`), failed (with `reason`),"
            " cancelled, moved (to `position`, by staff), retried (back in line),"
            " retrying (an attempt failed: `reason`, next try at `next_attempt_at`).",
        },
        "by": {
            "enum": list(ActivityBy.values),
            "description": "Who acted: the owner, staff, or the system (a worker).",
        },
        "actor": {
            "type": ["string", "null"],
            "description": "Staff only: the username of whoever acted, if a user did.",
        },
        "user": {"type": "string", "description": "Staff only: whose entry it is."},
        "title": {"type": "string", "description": "The meeting's title at the time."},
        "entry_id": {"type": ["string", "null"], "format": "uuid"},
        "meeting_id": {"type": ["integer", "null"]},
        "note": {"type": "string", "description": "Staff's note, if they left one."},
        "reason": {"type": "string"},
        "result_url": {"type": "string"},
        "position": {"type": ["integer", "null"]},
        "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
        "seq": {
            "type": ["integer", "null"],
            "description": "The queue event that made the change.",
        },
        "created_at": {"type": "string", "format": "date-time"},
    },
}
ACTIVITY_PAGE_SCHEMA = {
    "type": "object",
    "required": ["count", "next", "previous", "results"],
    "properties": {
        "count": {"type": "integer"},
        "next": {"type": ["string", "null"], "format": "uri"},
        "previous": {"type": ["string", "null"], "format": "uri"},
        "results": {"type": "array", "items": ACTIVITY_SCHEMA},
    },
}

ESTIMATES_SCHEMA = {
    "type": "object",
    "required": [
        "paused",
        "pause_note",
        "reason",
        "slots",
        "typical_transfer_seconds",
        "samples",
        "computed_at",
        "entries",
    ],
    "properties": {
        "paused": {"type": "boolean"},
        "pause_note": {"type": "string", "description": "Staff's word on why it is paused."},
        "reason": {
            "enum": ["", "paused", "no_history"],
            "description": "Why entries have no estimate: the queue is paused, or no"
            " transfer has completed yet.",
        },
        "slots": {"type": "integer", "description": "Transfers that run at once."},
        "typical_transfer_seconds": {"type": ["number", "null"]},
        "samples": {"type": "integer", "description": "Completed transfers learnt from."},
        "computed_at": {"type": "string", "format": "date-time"},
        "entries": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "starts_in_seconds", "eta_seconds"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "starts_in_seconds": {"type": "integer", "minimum": 0},
                    "eta_seconds": {"type": "integer", "minimum": 0},
                },
            },
        },
    },
}
