"""One definition of the wire format: docs/protocol.md prints the code's schema, and the
schema tells good messages from drifted ones."""

from __future__ import annotations

import json
import uuid

import pytest
from django.utils import timezone

from queue_app.events import UPDATE_TYPES, progress_message, protocol_schema
from queue_app.models import UpdateType
from tests.protocol_schema import assert_valid_message, documented_schema


def test_the_documented_schema_is_the_codes():
    expected = json.dumps(protocol_schema(), indent=2)
    assert documented_schema() == protocol_schema(), (
        "docs/protocol.md's schema block differs from queue_app.events; paste this:\n" + expected
    )


def test_update_types_are_the_models_choices():
    assert set(UPDATE_TYPES) == set(UpdateType.values)
    enum = protocol_schema()["$defs"]["QueueUpdate"]["properties"]["update_type"]["enum"]
    assert enum == list(UPDATE_TYPES)


def test_a_progress_update_is_valid():
    assert_valid_message(
        progress_message(
            entry_id=str(uuid.uuid4()),
            owner_id=3,
            stage="downloading",
            progress=1.7,  # clamped to 1
            worker="host:1",
            now=timezone.now(),
        )
    )


ENTRY = {"id": str(uuid.uuid4()), "position": 1, "status": "queued", "mine": False}


@pytest.mark.parametrize(
    "drifted",
    [
        {**ENTRY, "title": "someone's meeting"},  # a redacted entry leaking a field
        {**ENTRY, "status": "waiting"},  # a status the model does not have
        {**ENTRY, "position": 0},  # positions start at 1
        {key: value for key, value in ENTRY.items() if key != "mine"},
    ],
)
def test_drifted_entries_are_refused(drifted):
    message = {
        "type": "QueueUpdate",
        "version": 2,
        "update_type": "meeting_added",
        "seq": 1,
        "queue": [drifted],
        "entered": [],
        "moved": {"removed": [], "inserted": [[1, 1]]},
        "affected_user_id": None,
        "global_position": 1,
        "queue_length": 1,
        "waiting": 1,
        "paused": False,
        "timestamp": "2026-12-02T10:00:00Z",
    }
    with pytest.raises(AssertionError, match=r"breaks docs/protocol\.md's schema"):
        assert_valid_message(message)
    message["queue"] = [ENTRY]
    assert_valid_message(message)
