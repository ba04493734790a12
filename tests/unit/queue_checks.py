"""Checks shared by the queue tests: invariants of the rows, and the client replaying events.

`ClientViews` is the Zulip-style check: per viewer, snapshot + redacted events == snapshot.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.conf import settings

from queue_app import selectors
from queue_app.client_state import apply_event, comparable, state_from_snapshot
from queue_app.events import PUBLIC_ENTRY_FIELDS, Viewer, event_for_viewer
from queue_app.models import (
    ACTIVE_STATUSES,
    EntryStatus,
    QueueEntry,
    QueueEvent,
    QueueOwner,
    QueueState,
)
from tests.protocol_schema import assert_valid_message


def table_state() -> tuple[list[dict[str, Any]], tuple[bool, int], int]:
    """Everything a queue service may change, to show that a refused call changed nothing."""
    entries = list(QueueEntry.objects.order_by("id").values())
    # A missing state row is the same queue as a fresh one: services create it on demand.
    state = QueueState.objects.filter(pk=1).values_list("paused", "last_seq").first()
    return entries, state or (False, 0), QueueEvent.objects.count()


def line_ids() -> list[str]:
    """Queued entry ids, front of the line first."""
    return [str(pk) for pk in selectors.queued_entries().values_list("id", flat=True)]


def last_seq() -> int:
    state = QueueState.objects.filter(pk=1).first()
    return state.last_seq if state else 0


def assert_invariants() -> None:
    """What must hold between any two queue changes."""
    # Positions are exactly 1..n in order_key order, and the two ways of asking agree.
    queued = list(selectors.queued_entries())
    keys = [entry.order_key for entry in queued]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys), "two queued entries share an order key"
    positions = selectors.entry_positions()
    assert [positions[entry.id] for entry in queued] == list(range(1, len(queued) + 1))
    assert [selectors.entry_position(entry) for entry in queued] == list(range(1, len(queued) + 1))

    # At most one active entry per meeting.
    active_meetings = Counter(
        QueueEntry.objects.filter(status__in=ACTIVE_STATUSES).values_list("meeting_id", flat=True)
    )
    assert all(count == 1 for count in active_meetings.values()), active_meetings

    # The event log is contiguous from 1 and ends at last_seq.
    seqs = list(QueueEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, last_seq() + 1))

    running = QueueEntry.objects.filter(status=EntryStatus.RUNNING).count()
    assert running <= settings.QUEUE_CONCURRENCY

    # The counts the state keeps (so that no change counts the line) are the rows' counts.
    state = QueueState.objects.filter(pk=1).first() or QueueState(pk=1)
    counts = Counter(
        QueueEntry.objects.filter(status__in=ACTIVE_STATUSES).values_list("status", flat=True)
    )
    assert (state.waiting, state.running, state.retrying) == (
        counts[EntryStatus.QUEUED],
        counts[EntryStatus.RUNNING],
        counts[EntryStatus.RETRYING],
    )
    waiting_by_owner = Counter(
        QueueEntry.objects.filter(status=EntryStatus.QUEUED).values_list("owner_id", flat=True)
    )
    kept = dict(QueueOwner.objects.filter(waiting__gt=0).values_list("owner_id", "waiting"))
    assert kept == dict(waiting_by_owner)


def key_of(user: Any) -> int | None:
    """A viewer's key in the dicts below: the user's id, None for an anonymous viewer."""
    return user.pk if user is not None else None


def name_of(user: Any) -> str:
    return user.username if user is not None else "anonymous"


def snapshots_for(users: list[Any]) -> dict[int | None, dict[str, Any]]:
    """Each viewer's snapshot (None: anonymous), checked against the documented schema."""
    snapshots = {key_of(user): selectors.queue_snapshot_for(user) for user in users}
    for snapshot in snapshots.values():
        assert_valid_message(snapshot)
    return snapshots


def assert_snapshot_matches_rows(
    users: list[Any], snapshots: dict[int, dict[str, Any]] | None = None
) -> None:
    """Each viewer's snapshot says what the rows say, cut to that viewer's window (their
    own entries, the entries off the line, the head of the line) and redacted for them."""
    snapshots = snapshots or snapshots_for(users)
    state = QueueState.objects.filter(pk=1).first()
    positions = {str(k): v for k, v in selectors.entry_positions().items()}
    active = {
        str(pk): (status, owner_id)
        for pk, status, owner_id in QueueEntry.objects.filter(
            status__in=ACTIVE_STATUSES
        ).values_list("id", "status", "owner_id")
    }
    newest = QueueEvent.objects.order_by("-seq").first()
    if newest is not None:  # events carry the queue's length too (some without a count)
        assert newest.queue_length == len(active)
    waiting = sum(status == EntryStatus.QUEUED for status, _ in active.values())
    for user in users:
        snapshot = snapshots[key_of(user)]
        viewer = Viewer.of(user)
        assert snapshot["seq"] == (state.last_seq if state else 0)
        assert snapshot["paused"] == (state.paused if state else False)
        assert snapshot["queue_length"] == len(active)
        assert snapshot["waiting"] == waiting
        assert snapshot["head_places"] == viewer.head_places
        window = {
            pk
            for pk, (status, owner_id) in active.items()
            if viewer.owns(owner_id)
            or status != EntryStatus.QUEUED
            or positions[pk] <= viewer.head_places
        }
        assert {entry["id"] for entry in snapshot["queue"]} == window
        # The line comes after the entries off it, front first.
        listed = [entry["position"] for entry in snapshot["queue"]]
        on_line = [p for p in listed if p is not None]
        assert listed == [None] * (len(listed) - len(on_line)) + sorted(on_line)
        for entry in snapshot["queue"]:
            status, owner_id = active[entry["id"]]
            assert entry["status"] == status
            assert entry["position"] == positions.get(entry["id"])
            if viewer.sees_in_full(owner_id):
                assert entry["owner_id"] == str(owner_id)
                assert entry["mine"] == viewer.owns(owner_id)
            else:
                assert set(entry) == {*PUBLIC_ENTRY_FIELDS, "mine"}
                assert entry["mine"] is False


class ClientViews:
    """One client per viewer, started from a snapshot and fed every event after it."""

    def __init__(self, users: list[Any]) -> None:
        self.users = users
        self.states = {
            key_of(user): state_from_snapshot(s)
            for user, s in zip(users, snapshots_for(users).values(), strict=True)
        }

    def catch_up(self) -> dict[int, list[dict[str, Any]]]:
        """Apply, per viewer, the redacted events since its state's seq. Returns them."""
        received = {}
        for user in self.users:
            state = self.states[key_of(user)]
            viewer = Viewer.of(user)
            messages = [
                event_for_viewer(message, viewer)
                for message in selectors.events_after(seq=state["seq"])
            ]
            for message in messages:
                assert_valid_message(message)  # as Zulip's verify_action checks each event
                state = apply_event(state, message)
            self.states[key_of(user)] = state
            received[key_of(user)] = messages
        return received

    def assert_match_fresh_snapshots(
        self, snapshots: dict[int, dict[str, Any]] | None = None
    ) -> None:
        snapshots = snapshots or snapshots_for(self.users)
        for user in self.users:
            fresh = comparable(snapshots[key_of(user)])
            assert comparable(self.states[key_of(user)]) == fresh, f"client of {name_of(user)}"
