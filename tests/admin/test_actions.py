"""Actions on selected entries: each goes through a service, appends its event, is published,
and reports what succeeded and what failed and why."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

from queue_app import selectors
from queue_app.models import EntryStatus, QueueEntry
from queue_app.services import line
from tests.admin.conftest import events_since, last_seq, page_messages

pytestmark = pytest.mark.django_db


def queued() -> list[str]:
    """Titles of the queued entries, front first."""
    positions = selectors.entry_positions()
    entries = QueueEntry.objects.filter(pk__in=positions).select_related("meeting")
    return [str(e.meeting) for e in sorted(entries, key=lambda e: positions[e.pk])]


@pytest.fixture
def four(alice, bob, make_entry) -> dict[str, QueueEntry]:
    return {title: make_entry(alice if title in "AC" else bob, title) for title in "ABCD"}


def test_cancel_removes_the_entry_and_broadcasts_meeting_removed(
    four, run_action, published, staff
):
    seq = last_seq()

    response = run_action("cancel_entries", [four["B"]])

    assert response.status_code == 200
    assert page_messages(response) == [("success", "Cancelled 1 entry.")]
    assert QueueEntry.objects.get(pk=four["B"].pk).status == EntryStatus.CANCELLED
    assert queued() == ["A", "C", "D"]
    [event] = events_since(seq)
    assert event.update_type == "meeting_removed"
    assert event.entry_id == four["B"].pk
    assert event.global_position == 2
    assert published == [event.seq]
    log = LogEntry.objects.get(object_id=str(four["B"].pk))
    assert log.user == staff and "Cancelled" in log.get_change_message()


def test_cancel_of_several_reports_successes_and_each_failure(
    alice, make_entry, run_action, published
):
    queued = make_entry(alice, "Waiting")
    running = make_entry(alice, "Transferring", EntryStatus.RUNNING)
    done = make_entry(alice, "Finished", EntryStatus.COMPLETED)
    seq = last_seq()

    response = run_action("cancel_entries", [queued, running, done])

    assert page_messages(response) == [
        ("success", "Cancelled 2 entries."),
        (
            "error",
            "Could not cancel 1 entry: “Finished” (alice): Only a queued or running entry can "
            "be cancelled; this one is completed.",
        ),
    ]
    statuses = dict(QueueEntry.objects.values_list("meeting__title", "status"))
    assert statuses == {
        "Waiting": "cancelled",
        "Transferring": "cancelled",
        "Finished": "completed",
    }
    # One change, one event carrying both (issue 13: bulk actions are one event).
    [event] = events_since(seq)
    assert event.update_type == "meeting_removed"
    assert {entry["id"] for entry in event.payload} == {str(queued.pk), str(running.pk)}
    assert published == [event.seq]


def test_an_action_in_the_wrong_state_shows_an_error_and_changes_nothing(
    alice, make_entry, run_action, published
):
    done = make_entry(alice, "Finished", EntryStatus.COMPLETED)
    running = make_entry(alice, "Transferring", EntryStatus.RUNNING)
    queued = make_entry(alice, "Waiting")
    seq = last_seq()

    cancel = run_action("cancel_entries", [done])
    move = run_action("move_to_top", [running])
    retry = run_action("retry_entries", [queued])

    assert cancel.status_code == move.status_code == retry.status_code == 200
    assert page_messages(cancel) == [
        (
            "error",
            "Could not cancel 1 entry: “Finished” (alice): Only a queued or running entry can "
            "be cancelled; this one is completed.",
        )
    ]
    assert page_messages(move) == [
        (
            "error",
            "Could not move 1 entry: “Transferring” (alice): Only a queued entry can be moved; "
            "this one is running.",
        )
    ]
    assert page_messages(retry) == [
        (
            "error",
            "Could not retry 1 entry: “Waiting” (alice): Only a failed or cancelled entry can be "
            "retried; this one is queued.",
        )
    ]
    assert events_since(seq) == []
    assert published == []
    statuses = dict(QueueEntry.objects.values_list("meeting__title", "status"))
    assert statuses == {"Finished": "completed", "Transferring": "running", "Waiting": "queued"}
    assert not LogEntry.objects.exists()


def test_move_to_top_puts_the_entry_first_and_broadcasts_position_updated(
    four, run_action, published
):
    seq = last_seq()

    response = run_action("move_to_top", [four["C"]])

    assert page_messages(response) == [("success", "Moved to the top: 1 entry.")]
    assert selectors.entry_positions()[four["C"].pk] == 1
    assert queued() == ["C", "A", "B", "D"]
    [event] = events_since(seq)
    assert event.update_type == "position_updated"
    assert (event.entry_id, event.global_position) == (four["C"].pk, 1)
    assert event.payload[0]["position"] == 1
    assert published == [event.seq]


def test_moving_several_keeps_their_order_among_themselves(four, run_action, published):
    seq = last_seq()

    run_action("move_to_top", [four["D"], four["C"]])
    assert queued() == ["C", "D", "A", "B"]

    run_action("move_to_bottom", [four["D"], four["C"]])
    assert queued() == ["A", "B", "C", "D"]

    run_action("move_to_bottom", [four["A"]])
    assert queued() == ["B", "C", "D", "A"]

    events = events_since(seq)
    assert [e.update_type for e in events] == ["position_updated"] * 5
    assert [e.global_position for e in events] == [1, 1, 4, 4, 4]
    assert published == [e.seq for e in events]


def test_move_to_position_n(four, run_action, published):
    seq = last_seq()

    response = run_action("move_to_position", [four["D"]], position="2")

    assert page_messages(response) == [("success", "Moved to position 2: 1 entry.")]
    assert queued() == ["A", "D", "B", "C"]
    [event] = events_since(seq)
    assert (event.update_type, event.global_position) == ("position_updated", 2)
    assert published == [event.seq]


@pytest.mark.parametrize(
    ("position", "selection", "message"),
    [
        ("", "D", "Type a whole number in “Position N” (got “”)."),
        ("second", "D", "Type a whole number in “Position N” (got “second”)."),
        ("0", "D", "Could not move 1 entry: “D” (bob): Position must be between 1 and 4."),
        ("5", "D", "Could not move 1 entry: “D” (bob): Position must be between 1 and 4."),
        ("2", "CD", "Select exactly one entry to move to a position."),
    ],
)
def test_move_to_position_refuses_bad_input_and_changes_nothing(
    four, run_action, published, position, selection, message
):
    seq = last_seq()

    response = run_action(
        "move_to_position", [four[title] for title in selection], position=position
    )

    assert response.status_code == 200
    assert page_messages(response) == [("error", message)]
    assert queued() == ["A", "B", "C", "D"]
    assert events_since(seq) == []
    assert published == []


def test_retry_of_failed_and_cancelled_entries_requeues_them_at_the_back(
    alice, bob, make_entry, run_action, published, settings
):
    # First come, first served (with fair share, tests/unit/test_fair_share.py, Bob's
    # entry would go ahead of Alice's second).
    settings.QUEUE_ORDERING = "fifo"
    failed = make_entry(alice, "Broke", EntryStatus.FAILED)
    cancelled = make_entry(bob, "Dropped", EntryStatus.CANCELLED)
    make_entry(alice, "Waiting")
    seq = last_seq()

    response = run_action("retry_entries", [failed, cancelled])

    assert page_messages(response) == [("success", "Retried 2 entries.")]
    assert queued() == ["Waiting", "Broke", "Dropped"]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.last_error) == ("queued", 0, "")
    [event] = events_since(seq)
    assert event.update_type == "task_retried" and event.global_position == 2
    assert [(entry["id"], entry["position"]) for entry in event.payload] == [
        (str(failed.pk), 2),
        (str(cancelled.pk), 3),
    ]
    assert published == [event.seq]


def test_retry_refuses_a_meeting_that_is_already_back_in_the_queue(
    alice, make_entry, run_action, published
):
    old = make_entry(alice, "Twice", EntryStatus.CANCELLED)
    line.entry_enqueue(meeting=old.meeting)
    seq = last_seq()

    response = run_action("retry_entries", [old])

    assert page_messages(response) == [
        ("error", "Could not retry 1 entry: “Twice” (alice): This meeting is already in the queue.")
    ]
    assert QueueEntry.objects.get(pk=old.pk).status == EntryStatus.CANCELLED
    assert events_since(seq) == []
    assert published == []
