"""The walking skeleton's domain: enqueue records one event and publishes it on commit."""

from __future__ import annotations

import pytest

from queue_app import errors
from queue_app.models import EntryStatus, QueueEvent, QueueState
from queue_app.services import line

pytestmark = pytest.mark.django_db


def test_enqueue_appends_one_event_and_publishes_after_commit(
    alice, make_meeting, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr("realtime.publisher.publish_to_group", lambda g, m: sent.append((g, m)))
    monkeypatch.setattr("django.conf.settings.QUEUE_DISPATCH_ON_COMMIT", False)
    meeting = make_meeting(alice)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        entry = line.entry_enqueue(meeting=meeting)
    assert sent == [], "nothing is published before the transaction commits"
    for callback in callbacks:
        callback()

    assert entry.status == EntryStatus.QUEUED
    event = QueueEvent.objects.get()
    assert event.seq == 1 == QueueState.objects.get().last_seq
    assert event.update_type == "meeting_added"
    assert event.payload[0]["id"] == str(entry.id)
    [(group, message)] = sent
    assert group == "queue"
    assert message["event"]["seq"] == 1
    assert message["event"]["queue"][0]["title"] == meeting.title


def test_enqueue_twice_is_refused_and_changes_nothing(alice, make_meeting):
    meeting = make_meeting(alice)
    line.entry_enqueue(meeting=meeting)
    with pytest.raises(errors.AlreadyQueued):
        line.entry_enqueue(meeting=meeting)
    assert QueueEvent.objects.count() == 1
    assert meeting.entries.count() == 1
