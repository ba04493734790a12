"""The queue list: position order, derived positions, filters, search, and its cost."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from queue_app.models import EntryStatus, QueueEntry
from queue_app.services import line
from tests.admin.conftest import CHANGELIST, readonly_value, result_rows

pytestmark = pytest.mark.django_db


def test_changelist_lists_the_line_in_position_order_then_running_then_finished(
    staff_client, alice, bob, make_entry
):
    make_entry(alice, "Done first", EntryStatus.COMPLETED)
    make_entry(bob, "Failed second", EntryStatus.FAILED)
    make_entry(alice, "Running now", EntryStatus.RUNNING)
    make_entry(bob, "Waiting to retry", EntryStatus.RETRYING)
    make_entry(alice, "Queued A")
    make_entry(bob, "Queued B")
    third = make_entry(alice, "Queued C")
    # Reorder the line, so the list cannot pass by listing entries in creation order.
    line.entry_move(entry_id=third.pk, position="top")
    make_entry(bob, "Cancelled last", EntryStatus.CANCELLED)

    rows = result_rows(staff_client.get(reverse(CHANGELIST)))

    titles = [row["title"] for row in rows]
    assert titles[:3] == ["Queued C", "Queued A", "Queued B"]
    assert [row["position"] for row in rows[:3]] == ["1", "2", "3"]
    assert set(titles[3:5]) == {"Running now", "Waiting to retry"}
    # Finished ones last, the most recently finished first.
    assert titles[5:] == ["Cancelled last", "Failed second", "Done first"]
    assert all(row["position"] == "-" for row in rows[3:])  # no place in line
    by_title = {row["title"]: row for row in rows}
    assert by_title["Queued C"]["owner"] == "alice"
    assert by_title["Running now"]["attempts_display"] == "1/5"
    assert by_title["Failed second"]["error"] == "Fathom answered 404"
    assert by_title["Waiting to retry"]["status_display"].startswith("Waiting to retry (next at")
    assert by_title["Queued A"]["wait_time"].endswith("s")


def test_positions_are_global_under_a_filter_and_a_search(staff_client, alice, bob, make_entry):
    make_entry(alice, "Alice one")
    make_entry(bob, "Bob standup")
    make_entry(alice, "Alice two")
    make_entry(bob, "Bob retro")
    url = reverse(CHANGELIST)

    by_owner = result_rows(staff_client.get(url, {"owner__id__exact": bob.pk}))
    assert [(r["title"], r["position"]) for r in by_owner] == [
        ("Bob standup", "2"),
        ("Bob retro", "4"),
    ]

    by_title = result_rows(staff_client.get(url, {"q": "retro"}))
    assert [(r["title"], r["position"]) for r in by_title] == [("Bob retro", "4")]

    by_username = result_rows(staff_client.get(url, {"q": "alice"}))
    assert [r["title"] for r in by_username] == ["Alice one", "Alice two"]


def test_status_filter(staff_client, alice, make_entry):
    make_entry(alice, "Still queued")
    make_entry(alice, "Gone", EntryStatus.CANCELLED)
    make_entry(alice, "Broke", EntryStatus.FAILED)
    url = reverse(CHANGELIST)

    def titles(status: str) -> list[str]:
        return [r["title"] for r in result_rows(staff_client.get(url, {"status__exact": status}))]

    assert titles("failed") == ["Broke"]
    assert titles("queued") == ["Still queued"]
    assert titles("cancelled") == ["Gone"]


def test_positions_cost_the_same_number_of_queries_for_any_number_of_rows(
    staff_client, alice, bob, make_entry
):
    url = reverse(CHANGELIST)
    make_entry(alice)
    make_entry(bob, status=EntryStatus.COMPLETED)
    staff_client.get(url)  # warm the session and content-type caches
    with CaptureQueriesContext(connection) as few:
        assert len(result_rows(staff_client.get(url))) == 2

    for index in range(10):
        make_entry(alice if index % 2 else bob)
    make_entry(alice, status=EntryStatus.FAILED)
    with CaptureQueriesContext(connection) as many:
        assert len(result_rows(staff_client.get(url))) == 13

    assert len(many.captured_queries) == len(few.captured_queries)


def test_entry_detail_is_read_only_and_shows_the_position(staff_client, alice, make_entry):
    make_entry(alice, "Ahead")
    entry = make_entry(alice, "Behind")
    response = staff_client.get(reverse("admin:queue_app_queueentry_change", args=[entry.pk]))
    content = response.content.decode()

    assert response.status_code == 200
    assert 'name="_save"' not in content  # no save button
    assert 'name="status"' not in content  # and no inputs: every field is read-only
    assert 'name="last_error"' not in content
    assert readonly_value(content, "position") == "2"
    assert readonly_value(content, "status") == "Queued"


def test_the_meeting_link_shows_only_that_meetings_entries(staff_client, alice, make_entry):
    entry = make_entry(alice, "Retried one", EntryStatus.CANCELLED)
    line.entry_retry(entry_id=entry.pk)
    make_entry(alice, "Another meeting")

    rows = result_rows(
        staff_client.get(reverse(CHANGELIST), {"meeting__id__exact": entry.meeting_id})
    )

    assert [r["title"] for r in rows] == ["Retried one"]


def test_wait_is_time_in_line_until_now_or_until_the_entry_left_it(staff_client, alice, make_entry):
    waiting = make_entry(alice, "Waiting")
    running = make_entry(alice, "Running", EntryStatus.RUNNING)
    dropped = make_entry(alice, "Dropped", EntryStatus.CANCELLED)
    # Backdate the creation times: the only way to make a wait of known length.
    now = timezone.now()
    QueueEntry.objects.filter(pk=waiting.pk).update(created_at=now - timedelta(seconds=125))
    QueueEntry.objects.filter(pk=running.pk).update(
        created_at=F("started_at") - timedelta(hours=2, minutes=3)
    )
    QueueEntry.objects.filter(pk=dropped.pk).update(
        created_at=F("finished_at") - timedelta(seconds=42)
    )

    rows = result_rows(staff_client.get(reverse(CHANGELIST)))
    waits = {row["title"]: row["wait_time"] for row in rows}

    assert waits["Waiting"] in {"2m 05s", "2m 06s"}  # still counting
    assert waits["Running"] == "2h 03m"  # queued to started
    assert waits["Dropped"] == "42s"  # queued to cancelled
