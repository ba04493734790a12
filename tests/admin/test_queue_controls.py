"""The queue-wide switches above the list: pause, resume, clear."""

from __future__ import annotations

import pytest
from django.urls import reverse

from queue_app.models import EntryStatus, QueueEntry, QueueState
from tests.admin.conftest import CHANGELIST, events_since, last_seq, page_messages

pytestmark = pytest.mark.django_db

PAUSE = "admin:queue_app_queueentry_pause"
RESUME = "admin:queue_app_queueentry_resume"
CLEAR = "admin:queue_app_queueentry_clear"


def paused() -> bool:
    return QueueState.objects.get(pk=1).paused


def test_pause_and_resume_flip_the_state_broadcast_and_show_on_the_list(
    staff_client, admin_post, published, alice, make_entry
):
    make_entry(alice)
    seq = last_seq()
    running = staff_client.get(reverse(CHANGELIST)).content.decode()
    assert "The queue is running." in running
    assert reverse(PAUSE) in running and reverse(RESUME) not in running

    response = admin_post(staff_client, reverse(PAUSE))

    assert paused() is True
    assert page_messages(response) == [
        ("success", "Paused the queue: no new transfers start; running ones finish.")
    ]
    page = response.content.decode()  # the redirect lands on the list, which says so
    assert response.redirect_chain == [(reverse(CHANGELIST), 302)]
    assert "The queue is PAUSED." in page
    assert reverse(RESUME) in page and reverse(PAUSE) not in page

    response = admin_post(staff_client, reverse(RESUME))

    assert paused() is False
    assert page_messages(response) == [("success", "Resumed the queue.")]
    assert "The queue is running." in response.content.decode()
    events = events_since(seq)
    assert [(e.update_type, e.paused) for e in events] == [
        ("queue_paused", True),
        ("queue_resumed", False),
    ]
    assert published == [e.seq for e in events]


def test_pausing_twice_says_so_and_appends_nothing(staff_client, admin_post, published):
    admin_post(staff_client, reverse(PAUSE))
    seq = last_seq()

    response = admin_post(staff_client, reverse(PAUSE))

    assert page_messages(response) == [("info", "The queue was already paused.")]
    assert paused() is True
    assert events_since(seq) == []
    assert published == [seq]  # only the first pause was published


def test_a_get_never_changes_the_queue(staff_client, alice, make_entry):
    make_entry(alice)
    seq = last_seq()

    assert staff_client.get(reverse(PAUSE)).status_code == 405
    assert staff_client.get(reverse(RESUME)).status_code == 405
    confirm = staff_client.get(reverse(CLEAR))

    assert confirm.status_code == 200
    assert '<strong id="waiting-count">1</strong>' in confirm.content.decode()
    assert QueueState.objects.get(pk=1).paused is False
    assert QueueEntry.objects.get().status == EntryStatus.QUEUED
    assert events_since(seq) == []


def test_clear_cancels_what_waits_in_one_event_and_running_transfers_go_on(
    staff_client, admin_post, published, alice, bob, make_entry
):
    running = make_entry(alice, "Transferring", EntryStatus.RUNNING)
    retrying = make_entry(bob, "Backing off", EntryStatus.RETRYING)
    waiting = [make_entry(alice, "First"), make_entry(bob, "Second")]
    seq = last_seq()
    confirm = staff_client.get(reverse(CLEAR))
    assert '<strong id="waiting-count">3</strong>' in confirm.content.decode()

    response = admin_post(staff_client, reverse(CLEAR))

    assert page_messages(response) == [
        ("success", "Cleared the queue: cancelled 3 entries. Running transfers go on.")
    ]
    statuses = dict(QueueEntry.objects.values_list("pk", "status"))
    assert statuses[running.pk] == EntryStatus.RUNNING
    assert {statuses[e.pk] for e in [retrying, *waiting]} == {EntryStatus.CANCELLED}
    [event] = events_since(seq)
    assert event.update_type == "queue_cleared"
    assert {entry["id"] for entry in event.payload} == {str(e.pk) for e in [retrying, *waiting]}
    assert published == [event.seq]


def test_clearing_an_empty_queue_says_so_and_appends_nothing(
    staff_client, admin_post, published, alice, make_entry
):
    make_entry(alice, status=EntryStatus.COMPLETED)
    seq = last_seq()

    response = admin_post(staff_client, reverse(CLEAR))

    assert page_messages(response) == [("info", "The queue was already empty.")]
    assert events_since(seq) == []
    assert published == []
