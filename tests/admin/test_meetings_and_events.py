"""Meetings and the event log: browsable, searchable, never edited from the admin."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from queue_app.models import Meeting
from queue_app.services import line
from tests.admin.conftest import result_rows

pytestmark = pytest.mark.django_db

MEETINGS = "admin:queue_app_meeting_changelist"
EVENTS = "admin:queue_app_queueevent_changelist"


def test_meeting_list_shows_owner_start_and_duration_with_search_and_owner_filter(
    staff_client, alice, bob, make_meeting
):
    standup = make_meeting(alice, "Daily standup")
    standup.recording_start_time = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
    standup.duration_seconds = 3725
    standup.save()
    make_meeting(bob, "Quarterly review")

    rows = result_rows(staff_client.get(reverse(MEETINGS)))
    by_title = {row["title"]: row for row in rows}
    assert set(by_title) == {"Daily standup", "Quarterly review"}
    assert by_title["Daily standup"]["owner"] == "alice"
    assert by_title["Daily standup"]["duration"] == "1h 02m"
    assert "2025" in by_title["Daily standup"]["recording_start_time"]

    search = result_rows(staff_client.get(reverse(MEETINGS), {"q": "quarterly"}))
    assert [r["title"] for r in search] == ["Quarterly review"]
    by_id = result_rows(staff_client.get(reverse(MEETINGS), {"q": str(standup.recording_id)}))
    assert [r["title"] for r in by_id] == ["Daily standup"]
    by_owner = result_rows(staff_client.get(reverse(MEETINGS), {"owner__id__exact": alice.pk}))
    assert [r["title"] for r in by_owner] == ["Daily standup"]


def test_meetings_cannot_be_added_changed_or_deleted_here(staff_client, alice, make_meeting):
    meeting = make_meeting(alice, "Keep me")

    assert staff_client.get(reverse("admin:queue_app_meeting_add")).status_code == 403
    delete_url = reverse("admin:queue_app_meeting_delete", args=[meeting.pk])
    assert staff_client.post(delete_url, {"post": "yes"}).status_code == 403
    change_url = reverse("admin:queue_app_meeting_change", args=[meeting.pk])
    assert staff_client.post(change_url, {"title": "Renamed"}).status_code == 403
    assert staff_client.get(change_url).status_code == 200
    assert Meeting.objects.get().title == "Keep me"


def test_event_log_lists_newest_first_and_filters_by_update_type(staff_client, alice, make_entry):
    entry = make_entry(alice, "Logged")
    line.entry_move(entry_id=entry.pk, position="top")
    line.entry_cancel(entry_id=entry.pk)

    rows = result_rows(staff_client.get(reverse(EVENTS)))
    assert [(r["seq"], r["update_type_code"]) for r in rows] == [
        ("3", "meeting_removed"),
        ("2", "position_updated"),
        ("1", "meeting_added"),
    ]
    assert rows[0]["affected_user"] == "alice"
    assert rows[0]["global_position"] == "1"

    removed = result_rows(
        staff_client.get(reverse(EVENTS), {"update_type__exact": "meeting_removed"})
    )
    assert [r["seq"] for r in removed] == ["3"]


def test_events_cannot_be_added_changed_or_deleted(staff_client, alice, make_entry):
    make_entry(alice, "Logged")

    assert staff_client.get(reverse("admin:queue_app_queueevent_add")).status_code == 403
    delete_url = reverse("admin:queue_app_queueevent_delete", args=[1])
    assert staff_client.post(delete_url, {"post": "yes"}).status_code == 403
    change_url = reverse("admin:queue_app_queueevent_change", args=[1])
    assert staff_client.post(change_url, {"update_type": "queue_cleared"}).status_code == 403
    detail = staff_client.get(change_url)
    assert detail.status_code == 200
    assert "&quot;title&quot;: &quot;Logged&quot;" in detail.content.decode()
    assert "delete_selected" not in staff_client.get(reverse(EVENTS)).content.decode()
