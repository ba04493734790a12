"""Input serializers check the shape and types of requests; output serializers describe
the responses for the OpenAPI schema (entries and events are the wire contract's dicts).
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from queue_app.models import ACTIVE_STATUSES, EntryStatus, UpdateType

# Ids are PostgreSQL bigints; anything larger cannot name a row, so it is bad input.
MAX_BIGINT = 2**63 - 1
EVENTS_PAGE_SIZE = 100
EVENTS_MAX_PAGE_SIZE = 500
_DIGITS = re.compile(r"[0-9]{1,30}")


# --- input --------------------------------------------------------------------------------


class TokenObtainInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class EnqueueInputSerializer(serializers.Serializer):
    meeting_id = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT)


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


class EventsQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, default=0)
    limit = serializers.IntegerField(
        min_value=1, max_value=EVENTS_MAX_PAGE_SIZE, default=EVENTS_PAGE_SIZE
    )


# --- output (documentation of the wire format) --------------------------------------------


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable error code.")
    detail = serializers.CharField(help_text="Human-readable message.")
    fields = serializers.DictField(
        required=False, help_text="Per-field messages, for `invalid` only."
    )


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class EntrySerializer(serializers.Serializer):
    """An entry. Others' entries carry only id, position, status and `mine: false`."""

    id = serializers.UUIDField()
    position = serializers.IntegerField(
        allow_null=True, help_text="1 is the front; null if not queued."
    )
    status = serializers.ChoiceField(choices=EntryStatus.choices)
    mine = serializers.BooleanField()
    meeting_id = serializers.IntegerField(required=False)
    recording_id = serializers.IntegerField(required=False)
    title = serializers.CharField(required=False)
    owner_id = serializers.CharField(required=False)
    owner = serializers.CharField(required=False)
    attempts = serializers.IntegerField(required=False)
    max_attempts = serializers.IntegerField(required=False)
    last_error = serializers.CharField(required=False)
    stage = serializers.CharField(required=False)
    progress = serializers.FloatField(required=False)
    result_url = serializers.CharField(required=False)
    worker = serializers.CharField(required=False)
    created_at = serializers.DateTimeField(required=False)
    started_at = serializers.DateTimeField(required=False, allow_null=True)
    finished_at = serializers.DateTimeField(required=False, allow_null=True)
    next_attempt_at = serializers.DateTimeField(required=False, allow_null=True)
    eta_seconds = serializers.IntegerField(required=False, allow_null=True)


class QueueSnapshotSerializer(serializers.Serializer):
    type = serializers.CharField()
    seq = serializers.IntegerField(help_text="The last event this snapshot includes.")
    paused = serializers.BooleanField()
    queue_length = serializers.IntegerField()
    queue = EntrySerializer(many=True)
    timestamp = serializers.DateTimeField()


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
    active_entry_id = serializers.UUIDField(allow_null=True)
    active_entry_status = serializers.ChoiceField(
        choices=[(status.value, status.label) for status in ACTIVE_STATUSES], allow_null=True
    )


class MeetingPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = MeetingSerializer(many=True)


class EventSerializer(serializers.Serializer):
    type = serializers.CharField()
    update_type = serializers.ChoiceField(choices=UpdateType.choices)
    seq = serializers.IntegerField()
    queue = EntrySerializer(many=True)
    affected_user_id = serializers.CharField(allow_null=True)
    global_position = serializers.IntegerField(allow_null=True)
    queue_length = serializers.IntegerField()
    paused = serializers.BooleanField()
    timestamp = serializers.DateTimeField()


class EventsPageSerializer(serializers.Serializer):
    results = EventSerializer(many=True)
    after = serializers.IntegerField(help_text="Pass as `after` to get the events after these.")
    next = serializers.URLField(allow_null=True, help_text="The next page, or null if none yet.")
