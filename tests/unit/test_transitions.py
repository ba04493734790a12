"""The table of status changes: each refuses the states it does not start from, and
together they reach every status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from queue_app import transitions
from queue_app.errors import InvalidState
from queue_app.models import EntryStatus, QueueEntry

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", sorted(transitions.TRANSITIONS))
def test_a_transition_refuses_every_state_it_does_not_start_from(name):
    transition = transitions.TRANSITIONS[name]
    for status in EntryStatus.values:
        entry = QueueEntry(status=status)
        if status in transition.sources:
            transition.check(entry)
        else:
            with pytest.raises(InvalidState, match=f"this one is {status}"):
                transition.check(entry)


def test_every_status_is_reached_and_every_active_one_can_be_left():
    targets = {t.target for t in transitions.TRANSITIONS.values()}
    assert targets == set(EntryStatus.values)
    for status in (EntryStatus.QUEUED, EntryStatus.RUNNING, EntryStatus.RETRYING):
        assert any(
            status in t.sources and t.target != status for t in transitions.TRANSITIONS.values()
        )


def test_values_stamp_the_time_and_take_what_the_caller_decides():
    values = transitions.FAIL.values(NOW, last_error="404")
    assert values == {
        "status": EntryStatus.FAILED,
        "finished_at": NOW,
        "lease_expires_at": None,
        "next_attempt_at": None,
        "last_error": "404",
        "updated_at": NOW,
    }
