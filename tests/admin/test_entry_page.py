"""The entry page runs the entry (Retry, Cancel, Move through the services, one event each);
the list shows when entries were created, started and finished; staff land on the monitor
and reach the admin from every page."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from queue_app.models import EntryStatus, QueueEntry
from tests.admin.conftest import events_since, last_seq, page_messages
from tests.helpers import PASSWORD

pytestmark = pytest.mark.django_db


def change_url(entry: QueueEntry) -> str:
    return reverse("admin:queue_app_queueentry_change", args=[entry.pk])


def operate_url(entry: QueueEntry, verb: str) -> str:
    return reverse("admin:queue_app_queueentry_operate", args=[entry.pk, verb])


def test_the_page_offers_what_the_entrys_state_allows(staff_client, alice, make_entry):
    queued = make_entry(alice, "Waiting")
    failed = make_entry(alice, "Broke", EntryStatus.FAILED)
    page = staff_client.get(change_url(queued)).content.decode()
    assert operate_url(queued, "cancel") in page and operate_url(queued, "move") in page
    assert operate_url(queued, "retry") not in page
    page = staff_client.get(change_url(failed)).content.decode()
    assert operate_url(failed, "retry") in page
    assert operate_url(failed, "cancel") not in page


def test_retry_cancel_and_move_from_the_entry_page(staff_client, alice, bob, make_entry):
    first = make_entry(alice, "First")
    second = make_entry(bob, "Second")
    failed = make_entry(alice, "Broke", EntryStatus.FAILED)
    seq = last_seq()

    moved = staff_client.post(operate_url(second, "move"), {"position": "top"}, follow=True)
    assert page_messages(moved) == [("success", "Moved “Second”.")]
    staff_client.post(operate_url(failed, "retry"))
    staff_client.post(operate_url(first, "cancel"))

    assert [e.update_type for e in events_since(seq)] == [
        "position_updated",
        "task_retried",
        "meeting_removed",
    ]
    statuses = dict(QueueEntry.objects.values_list("meeting__title", "status"))
    assert statuses == {"First": "cancelled", "Second": "queued", "Broke": "queued"}


def test_a_refused_control_says_why_and_changes_nothing(staff_client, alice, make_entry):
    done = make_entry(alice, "Finished", EntryStatus.COMPLETED)
    queued = make_entry(alice, "Waiting")
    seq = last_seq()
    response = staff_client.post(operate_url(done, "cancel"), follow=True)
    assert page_messages(response) == [
        (
            "error",
            "Could not cancel: Only a queued or running entry can be cancelled; "
            "this one is completed.",
        )
    ]
    response = staff_client.post(operate_url(queued, "move"), {"position": "١٢"}, follow=True)
    assert page_messages(response)[0][0] == "error"
    assert events_since(seq) == []
    # A GET never changes the queue; an unknown verb is a 404.
    assert staff_client.get(operate_url(queued, "cancel")).status_code == 405
    assert staff_client.post(operate_url(queued, "explode")).status_code == 404


def test_only_operators_may_use_the_controls(alice, make_entry):
    entry = make_entry(alice, "Waiting")
    client = Client()
    client.force_login(alice)
    response = client.post(operate_url(entry, "cancel"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert QueueEntry.objects.get(pk=entry.pk).status == EntryStatus.QUEUED


def test_the_list_shows_created_started_and_finished_and_sorts_by_position(
    staff_client, alice, make_entry
):
    make_entry(alice, "Waiting")
    page = staff_client.get(reverse("admin:queue_app_queueentry_changelist")).content.decode()
    for column in ("column-created_at", "column-started_at", "column-finished_at"):
        assert column in page
    assert "sortable column-position" in page
    assert '<nav class="toplinks">' in page  # the date hierarchy


def test_staff_land_on_the_monitor_and_users_on_their_meetings(staff, alice):
    for user, landing in ((staff, "/monitor"), (alice, "/")):
        client = Client()
        response = client.post(
            "/accounts/login/", {"username": user.username, "password": PASSWORD}
        )
        assert response.status_code == 302
        assert client.get(response["Location"])["Location"] == landing


def test_staff_pages_link_to_the_admin_and_the_monitor(staff_client, alice):
    page = staff_client.get("/queue").content.decode()
    assert 'href="/monitor"' in page
    assert f'href="{reverse("admin:queue_app_queueentry_changelist")}"' in page
    client = Client()
    client.force_login(alice)
    assert 'href="/admin/' not in client.get("/queue").content.decode()
