"""Who reaches the queue admin, and the doors it keeps shut: add, change, delete."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from queue_app.models import EntryStatus, QueueEntry, QueueState
from tests.admin.conftest import CHANGELIST, events_since, last_seq

pytestmark = pytest.mark.django_db


def test_a_user_who_is_not_staff_is_sent_to_the_login_page(alice, make_entry, admin_post):
    entry = make_entry(alice)
    client = Client()
    client.force_login(alice)
    seq = last_seq()

    for url in [
        reverse(CHANGELIST),
        reverse("admin:queue_app_queueentry_change", args=[entry.pk]),
        reverse("admin:queue_app_queueentry_clear"),
        reverse("admin:queue_app_meeting_changelist"),
        reverse("admin:queue_app_queueevent_changelist"),
    ]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url

    for url, data in [
        (reverse("admin:queue_app_queueentry_pause"), {}),
        (reverse("admin:queue_app_queueentry_clear"), {}),
        (
            reverse(CHANGELIST),
            {"action": "cancel_entries", "_selected_action": [entry.pk], "index": 0},
        ),
    ]:
        response = admin_post(client, url, data, follow=False)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url

    assert QueueEntry.objects.get().status == EntryStatus.QUEUED
    assert QueueState.objects.get(pk=1).paused is False
    assert events_since(seq) == []


def test_the_add_change_and_delete_views_are_refused(staff_client, alice, make_entry):
    entry = make_entry(alice)
    seq = last_seq()

    assert staff_client.get(reverse("admin:queue_app_queueentry_add")).status_code == 403
    delete_url = reverse("admin:queue_app_queueentry_delete", args=[entry.pk])
    assert staff_client.get(delete_url).status_code == 403
    assert staff_client.post(delete_url, {"post": "yes"}).status_code == 403
    change_url = reverse("admin:queue_app_queueentry_change", args=[entry.pk])
    assert staff_client.post(change_url, {"status": "completed"}).status_code == 403

    # Nor can a form sneak in as an action: delete_selected is not offered.
    changelist = staff_client.get(reverse(CHANGELIST)).content.decode()
    assert 'value="cancel_entries"' in changelist
    assert "delete_selected" not in changelist
    assert QueueEntry.objects.get().status == EntryStatus.QUEUED
    assert events_since(seq) == []


def test_queue_state_is_not_exposed(staff_client):
    assert staff_client.get("/admin/queue_app/queuestate/").status_code == 404


def test_staff_who_may_only_view_can_browse_but_not_run_the_queue(
    make_user, alice, make_entry, admin_post
):
    viewer = make_user("viewer")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_queueentry"))
    client = Client()
    client.force_login(viewer)
    entry = make_entry(alice, "Waiting")
    seq = last_seq()

    page = client.get(reverse(CHANGELIST))
    content = page.content.decode()
    assert page.status_code == 200
    assert "Waiting" in content and "The queue is running." in content
    assert 'value="cancel_entries"' not in content  # no actions offered
    assert reverse("admin:queue_app_queueentry_pause") not in content
    assert admin_post(client, reverse("admin:queue_app_queueentry_pause")).status_code == 403
    assert admin_post(client, reverse("admin:queue_app_queueentry_clear")).status_code == 403
    admin_post(
        client,
        reverse(CHANGELIST),
        {"action": "cancel_entries", "_selected_action": [entry.pk], "index": 0},
    )

    assert QueueEntry.objects.get().status == EntryStatus.QUEUED
    assert events_since(seq) == []
