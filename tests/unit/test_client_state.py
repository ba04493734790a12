"""Zulip's test for every update type: a viewer's snapshot plus the events it receives
equals a fresh snapshot, for the entry's owner, another user and staff.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone

from queue_app import selectors
from queue_app.client_state import (
    GapError,
    apply_event,
    comparable,
    state_from_snapshot,
)
from queue_app.events import Viewer, event_for_viewer
from queue_app.models import QueueEntry
from queue_app.services import line, transfers
from tests.queue_helpers import fail_transfer, wait_to_retry
from tests.unit.queue_checks import ClientViews, assert_invariants, line_ids

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(settings, alice, bob, staff, make_meeting) -> SimpleNamespace:
    """A busy queue: alice's a0 running, bob's b0 waiting to retry, a1 b1 a2 b2 in line."""
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    settings.QUEUE_CONCURRENCY = 3
    w = SimpleNamespace(alice=alice, bob=bob, staff=staff, make_meeting=make_meeting)
    for name, owner in [("a0", alice), ("b0", bob)]:
        setattr(w, name, line.entry_enqueue(meeting=make_meeting(owner)))
        transfers.transfer_claim_next(worker=f"worker-{name}")
    wait_to_retry(entry_id=w.b0.pk, worker="worker-b0", error="503", delay_seconds=3600)
    for name, owner in [("a1", alice), ("b1", bob), ("a2", alice), ("b2", bob)]:
        setattr(w, name, line.entry_enqueue(meeting=make_meeting(owner)))
    assert line_ids() == [str(w.a1.pk), str(w.b1.pk), str(w.a2.pk), str(w.b2.pk)]
    return w


def expire_lease(entry: QueueEntry) -> None:
    """Setup, not the service under test: the worker stopped heartbeating long ago."""
    QueueEntry.objects.filter(pk=entry.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def make_due(entry: QueueEntry) -> None:
    QueueEntry.objects.filter(pk=entry.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def _claim_head(w: SimpleNamespace) -> None:
    assert transfers.transfer_claim_next(worker="w").pk == w.a1.pk


def _claim_due_retry(w: SimpleNamespace) -> None:
    make_due(w.b0)
    assert transfers.transfer_claim_next(worker="w").pk == w.b0.pk


def _exhaust_retries(w: SimpleNamespace) -> None:
    QueueEntry.objects.filter(pk=w.a0.pk).update(max_attempts=1)
    wait_to_retry(entry_id=w.a0.pk, worker="worker-a0", error="503", delay_seconds=1)


def _claim_due_retry_too(w: SimpleNamespace) -> None:
    make_due(w.b0)
    transfers.transfer_claim_next(worker="")


def _requeue_two_expired(w: SimpleNamespace) -> None:
    expire_lease(w.a0)
    expire_lease(w.b0)
    assert len(transfers.transfers_requeue_expired()) == 2


def _requeue_out_of_attempts(w: SimpleNamespace) -> None:
    QueueEntry.objects.filter(pk=w.a0.pk).update(max_attempts=1)
    expire_lease(w.a0)
    assert len(transfers.transfers_requeue_expired()) == 1


# (name, the update types it must produce, setup that is not under test, the action)
SCENARIOS: list[tuple[str, list[str], Callable[[Any], None], Callable[[Any], None]]] = [
    ("enqueue", ["meeting_added"], lambda w: None,
     lambda w: line.entry_enqueue(meeting=w.make_meeting(w.alice))),
    ("cancel queued mid-line", ["meeting_removed"], lambda w: None,
     lambda w: line.entry_cancel(entry_id=w.b1.pk)),
    ("cancel running", ["meeting_removed"], lambda w: None,
     lambda w: line.entry_cancel(entry_id=w.a0.pk)),
    ("cancel retrying", ["meeting_removed"], lambda w: None,
     lambda w: line.entry_cancel(entry_id=w.b0.pk)),
    ("move back to front", ["position_updated"], lambda w: None,
     lambda w: line.entry_move(entry_id=w.b2.pk, position="top")),
    ("move front to back", ["position_updated"], lambda w: None,
     lambda w: line.entry_move(entry_id=w.a1.pk, position="bottom")),
    ("move into the middle", ["position_updated"], lambda w: None,
     lambda w: line.entry_move(entry_id=w.a1.pk, position=3)),
    ("move to where it is", ["position_updated"], lambda w: None,
     lambda w: line.entry_move(entry_id=w.a2.pk, position=3)),
    ("clear", ["queue_cleared"], lambda w: None, lambda w: line.queue_clear()),
    ("pause", ["queue_paused"], lambda w: None, lambda w: line.queue_pause()),
    ("resume", ["queue_resumed"], lambda w: line.queue_pause(), lambda w: line.queue_resume()),
    ("claim the head of the line", ["task_started"], lambda w: None, _claim_head),
    ("claim a retry that is due", ["task_started"], lambda w: None, _claim_due_retry),
    ("complete", ["task_completed"], lambda w: None,
     lambda w: transfers.transfer_complete(entry_id=w.a0.pk, worker="worker-a0", result_url="https://x.test/1")),
    ("fail", ["task_failed"], lambda w: None,
     lambda w: fail_transfer(entry_id=w.a0.pk, worker="worker-a0", error="404")),
    ("schedule a retry", ["task_retried"], lambda w: None,
     lambda w: wait_to_retry(entry_id=w.a0.pk, worker="worker-a0", error="503",
                                       delay_seconds=30)),
    ("schedule a retry past max_attempts", ["task_failed"], lambda w: None, _exhaust_retries),
    ("retry a cancelled entry", ["task_retried"], lambda w: line.entry_cancel(entry_id=w.a1.pk),
     lambda w: line.entry_retry(entry_id=w.a1.pk)),
    ("retry a failed entry", ["task_retried"],
     lambda w: fail_transfer(entry_id=w.a0.pk, worker="worker-a0", error="404"),
     lambda w: line.entry_retry(entry_id=w.a0.pk)),
    ("requeue expired leases", ["task_retried", "task_retried"], _claim_due_retry_too,
     _requeue_two_expired),
    ("requeue an expired lease out of attempts", ["task_failed"], lambda w: None,
     _requeue_out_of_attempts),
]  # fmt: skip


@pytest.mark.parametrize(
    ("expected_types", "setup", "action"),
    [pytest.param(types, setup, action, id=name) for name, types, setup, action in SCENARIOS],
)
def test_events_bring_every_viewers_snapshot_up_to_date(
    world: SimpleNamespace, expected_types: list[str], setup: Callable, action: Callable
) -> None:
    setup(world)
    clients = ClientViews([world.alice, world.bob, world.staff])

    action(world)

    received = clients.catch_up()
    for user, messages in received.items():
        # Every viewer gets every event, redacted or not: seq stays contiguous per socket.
        assert [m["update_type"] for m in messages] == expected_types, user
    clients.assert_match_fresh_snapshots()
    assert_invariants()


def test_other_users_learn_only_that_the_line_moved(world: SimpleNamespace) -> None:
    seq = selectors.queue_snapshot_for(world.bob)["seq"]
    line.entry_move(entry_id=world.a2.pk, position="top")
    [message] = selectors.events_after(seq=seq)

    for_bob = event_for_viewer(message, Viewer.of(world.bob))
    assert for_bob["queue"] == [
        {"id": str(world.a2.pk), "position": 1, "status": "queued", "mine": False}
    ]
    assert for_bob["affected_user_id"] is None
    for_alice = event_for_viewer(message, Viewer.of(world.alice))
    assert for_alice["queue"][0]["title"] == world.a2.meeting.title
    assert for_alice["queue"][0]["mine"] is True
    assert for_alice["affected_user_id"] == str(world.alice.pk)


def test_a_client_that_misses_an_event_does_not_match(world: SimpleNamespace) -> None:
    """The check above can fail: skipping an event, or a stale entry, is noticed."""
    staff = Viewer.of(world.staff)
    before = state_from_snapshot(selectors.queue_snapshot_for(world.staff))
    line.entry_move(entry_id=world.b2.pk, position="top")
    line.entry_cancel(entry_id=world.a1.pk)
    fresh = comparable(selectors.queue_snapshot_for(world.staff))
    first, second = (
        event_for_viewer(message, staff) for message in selectors.events_after(seq=before["seq"])
    )

    with pytest.raises(GapError):
        apply_event(before, second)
    # A client that applied the move but not the cancel still shows a1 in line.
    assert comparable(apply_event(before, first)) != fresh
    assert comparable(apply_event(apply_event(before, first), second)) == fresh


def test_apply_event_leaves_its_input_alone(world: SimpleNamespace) -> None:
    state = state_from_snapshot(selectors.queue_snapshot_for(world.staff))
    copy_before = comparable(state)
    line.queue_clear()
    [message] = selectors.events_after(seq=state["seq"])
    after = apply_event(state, event_for_viewer(message, Viewer.of(world.staff)))
    assert comparable(state) == copy_before
    assert [e["status"] for e in after["queue"]] == ["running"]


def test_progress_updates_change_live_fields_only(world: SimpleNamespace) -> None:
    state = state_from_snapshot(selectors.queue_snapshot_for(world.staff))
    progress = {
        "type": "ProgressUpdate",
        "entry_id": str(world.a0.pk),
        "stage": "uploading",
        "progress": 0.5,
        "worker": "worker-a0",
    }
    after = apply_event(state, progress)
    [a0] = [e for e in after["queue"] if e["id"] == str(world.a0.pk)]
    assert (a0["stage"], a0["progress"]) == ("uploading", 0.5)
    assert after["seq"] == state["seq"]
    assert comparable(after) == comparable(state)


def test_unknown_update_types_are_refused(world: SimpleNamespace) -> None:
    state = state_from_snapshot(selectors.queue_snapshot_for(world.staff))
    message = {"type": "QueueUpdate", "update_type": "nonsense", "seq": state["seq"] + 1}
    with pytest.raises(ValueError, match="nonsense"):
        apply_event(state, message)


def test_clients_follow_from_an_empty_database(settings, alice, bob, staff, make_meeting) -> None:
    """No QueueState row yet (a fresh install, or after a flush): snapshots say seq 0."""
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    clients = ClientViews([alice, bob, staff])
    assert {state["seq"] for state in clients.states.values()} == {0}

    line.entry_enqueue(meeting=make_meeting(bob))
    transfers.transfer_claim_next(worker="w")

    clients.catch_up()
    clients.assert_match_fresh_snapshots()
