"""Random sequences of every queue service, with the queue's invariants checked after each
step and three clients (owner, other user, staff) kept up to date by events alone.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, event
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from queue_app import errors, events, selectors
from queue_app.models import (
    ACTIVE_STATUSES,
    EntryStatus,
    Meeting,
    QueueEntry,
    QueueEvent,
    QueueState,
)
from queue_app.services import line, ordering, transfers
from tests.queue_helpers import fail_transfer, wait_to_retry
from tests.unit.queue_checks import (
    ClientViews,
    assert_invariants,
    assert_snapshot_matches_rows,
    line_ids,
    snapshots_for,
    table_state,
)

CONCURRENCY = 2
# A step costs about 60 queries (the service, the invariants, three snapshots and the event
# replay): 40-150 ms on a two-core machine shared with other test runs. 20 runs of up to 30
# steps stay under a minute there; QUEUE_MACHINE_EXAMPLES=300 makes a deeper run (done when
# the services change: it takes a quarter of an hour).
MACHINE_SETTINGS = hypothesis_settings(
    max_examples=int(os.environ.get("QUEUE_MACHINE_EXAMPLES", "20")),
    stateful_step_count=30,
    deadline=None,
    database=None,  # no .hypothesis/ directory written into a shared checkout
    suppress_health_check=[HealthCheck.too_slow],
)

# Which entry a rule acts on: one in 16 draws is an id that names no entry; otherwise even
# numbers pick among the entries the rule is meant for and odd ones among all entries, so
# most calls do something and some are refused.
entry_choice = st.integers(min_value=0, max_value=100)
positions = st.one_of(
    st.integers(min_value=-1, max_value=9), st.sampled_from(["top", "bottom", "2", None])
)
workers = st.sampled_from(["", "worker-1", "worker-2"])


class QueueMachine(RuleBasedStateMachine):
    """Each rule calls one service and checks that it made exactly the change it reports."""

    users: list[Any] = []  # alice, bob, staff; set by the test
    viewers: list[Any] = []  # the users and an anonymous viewer (None)
    meetings: list[Meeting] = []
    outcomes: Counter[str] = Counter()  # across all runs: what the rules managed to do

    def __init__(self) -> None:
        super().__init__()
        # One savepoint per run, rolled back in teardown: runs do not see each other's rows
        # while the users and meetings made once by the test stay.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.clients = ClientViews(self.viewers)
        self.running = False  # any running entry; kept by the invariant, read by preconditions
        # Entries staff moved or a lost worker put back at the front: pinned where they are,
        # outside fair share's rounds (kept by the invariant: dropped when they leave).
        self.pinned: set[str] = set()

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- helpers -------------------------------------------------------------------------

    def pick(self, choice: int, *statuses: str) -> str:
        """An entry id: see `entry_choice`."""
        entries = QueueEntry.objects.order_by("created_at", "id")
        ids = [str(pk) for pk in entries.values_list("id", flat=True)]
        if choice % 2 == 0 and statuses:
            # None of the kind wanted: any entry, so that the call is refused, not wasted.
            ids = [
                str(pk) for pk in entries.filter(status__in=statuses).values_list("id", flat=True)
            ] or ids
        if choice % 16 == 15 or not ids:
            return str(uuid.uuid4())
        return ids[(choice // 2) % len(ids)]

    def change(self, call: Callable[[], Any], events_if_done: Callable[[Any], int]) -> Any:
        """Run a service. Refused (QueueError, or False/None/0): no event and no row changed.

        Done: exactly `events_if_done(result)` events, contiguous after the old last seq.
        """
        before = table_state()
        try:
            result = call()
        except errors.QueueError as exc:
            event(f"refused: {exc.code}")
            self.outcomes[f"refused: {exc.code}"] += 1
            assert table_state() == before, "a refused change changed something"
            return None
        _, _, events_before = before
        if result in (None, False, 0):
            entries, state, events = table_state()
            assert events == events_before, "a change that did nothing produced an event"
            assert (entries, state) == before[:2]
            return result
        _, state, events_after = table_state()
        assert events_after - events_before == events_if_done(result)
        done = f"done: {QueueEvent.objects.order_by('-seq').first().update_type}"
        event(done)
        self.outcomes[done] += 1
        return result

    def one_event(self, result: Any) -> int:
        return 1

    def before_joining(self) -> tuple[list[str], int]:
        """The line and fair share's current round, before entries join it."""
        state = QueueState.objects.filter(pk=1).first()
        return line_ids(), state.head_round if state else 0

    def assert_joined(self, before: tuple[list[str], int], new: list[str]) -> None:
        """Entries `new` joined the line: in fifo order at the back, in the given order; in
        fair order by the rules of docs/architecture.md ("The order of the line")."""
        waiting, head_round = before
        now = line_ids()
        assert [pk for pk in now if pk not in new] == waiting, "the others keep their order"
        if django_settings.QUEUE_ORDERING == "fifo":
            assert now == [*waiting, *new], "new entries join at the back, in order"
            return
        rows = {
            str(pk): (owner_id, key)
            for pk, owner_id, key in QueueEntry.objects.filter(pk__in=now).values_list(
                "id", "owner_id", "order_key"
            )
        }
        place = {pk: index for index, pk in enumerate(now)}
        joining = {rows[pk][0] for pk in new}
        owners_before = {rows[pk][0] for pk in waiting}
        for pk in new:
            owner = rows[pk][0]
            ahead = now[: place[pk]]
            # Behind the owner's own waiting entries (those not pinned by staff).
            assert all(
                rows[other][0] != owner or other in new or other in self.pinned
                for other in now[place[pk] + 1 :]
            ), "an entry joins behind its owner's waiting ones"
            if owner not in owners_before and not any(rows[o][0] == owner for o in ahead):
                # A newcomer's first entry: behind at most one entry per other person.
                others = {rows[other][0] for other in now} - {owner}
                unpinned = [other for other in ahead if other not in self.pinned]
                firsts = [other for other in unpinned if rows[other][0] == owner]
                assert len(unpinned) - len(firsts) <= len(others), (len(unpinned), others)
        for index, pk in enumerate(waiting):
            if pk in self.pinned:
                continue
            # Pushed back by at most one place per joining person per round that the entry
            # is ahead of the current round: never, for an entry in the current round.
            rounds_ahead = max(ordering.round_of(rows[pk][1]) - head_round, 0)
            others = len(joining - {rows[pk][0]})
            assert place[pk] - index <= others * rounds_ahead, (place[pk], index, rounds_ahead)

    # --- rules ---------------------------------------------------------------------------

    @initialize(count=st.integers(min_value=0, max_value=5))
    def start_with_a_line(self, count: int) -> None:
        """Most runs start with a few entries, so that fewer steps go to building a line."""
        for meeting in self.meetings[:count]:
            self.change(lambda m=meeting: line.entry_enqueue(meeting=m), self.one_event)

    @rule(meeting=st.integers(min_value=0, max_value=100))
    def enqueue(self, meeting: int) -> None:
        target = self.meetings[meeting % len(self.meetings)]
        was_active = QueueEntry.objects.filter(meeting=target, status__in=ACTIVE_STATUSES).exists()
        before = self.before_joining()
        entry = self.change(lambda: line.entry_enqueue(meeting=target), self.one_event)
        assert (entry is None) == was_active
        if entry is not None:
            self.assert_joined(before, [str(entry.pk)])

    @rule(choice=entry_choice)
    def cancel(self, choice: int) -> None:
        entry_id = self.pick(choice, *ACTIVE_STATUSES)
        was_active = QueueEntry.objects.filter(pk=entry_id, status__in=ACTIVE_STATUSES).exists()
        waiting = [pk for pk in line_ids() if pk != entry_id]
        cancelled = self.change(lambda: line.entry_cancel(entry_id=entry_id), self.one_event)
        assert (cancelled is not None) == was_active
        assert line_ids() == waiting

    @rule(choice=entry_choice, position=positions)
    def move(self, choice: int, position: Any) -> None:
        entry_id = self.pick(choice, EntryStatus.QUEUED)
        waiting = line_ids()
        moved = self.change(
            lambda: line.entry_move(entry_id=entry_id, position=position), self.one_event
        )
        valid = (
            entry_id in waiting
            and (position in ("top", "bottom") or type(position) is int)
            and (not isinstance(position, int) or 1 <= position <= len(waiting))
        )
        assert (moved is not None) == valid, (entry_id in waiting, position, len(waiting))
        if moved is not None:
            self.pinned.add(entry_id)
            index = {"top": 0, "bottom": len(waiting) - 1}.get(position, position)
            index = index - 1 if isinstance(position, int) else index
            expected = [pk for pk in waiting if pk != entry_id]
            expected.insert(index, entry_id)
            assert line_ids() == expected

    @rule(worker=workers)
    def claim_next(self, worker: str) -> None:
        now = timezone.now()
        state = QueueState.objects.filter(pk=1).first()
        running = QueueEntry.objects.filter(status=EntryStatus.RUNNING).count()
        due = (
            QueueEntry.objects.filter(status=EntryStatus.RETRYING, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "order_key")
            .values_list("id", flat=True)
            .first()
        )
        waiting = line_ids()
        expected = None
        if not (state and state.paused) and running < CONCURRENCY:
            expected = str(due) if due else (waiting[0] if waiting else None)
        claimed = self.change(lambda: transfers.transfer_claim_next(worker=worker), self.one_event)
        # A due retry goes first, else the head of the line; nothing when paused or full.
        assert (str(claimed.pk) if claimed else None) == expected
        if claimed is not None:
            assert claimed.status == EntryStatus.RUNNING
            assert claimed.worker == worker

    def running_entry(self, choice: int, worker: str) -> tuple[str | None, str]:
        """A running entry and its worker, begun by `worker` first if nobody has begun it."""
        entry_id = self.pick(2 * choice, EntryStatus.RUNNING)
        entry = QueueEntry.objects.filter(pk=entry_id, status=EntryStatus.RUNNING).first()
        if entry is None:
            return None, worker
        if entry.worker == "":
            # begin() is a lease update with no event (nothing a client sees changes).
            before = table_state()[2]
            assert transfers.transfer_begin(entry_id=entry_id, worker=worker or "worker-x")
            assert not transfers.transfer_begin(entry_id=entry_id, worker="someone-else")
            assert table_state()[2] == before
            return entry_id, worker or "worker-x"
        return entry_id, entry.worker

    @precondition(lambda self: self.running)
    @rule(
        choice=st.integers(min_value=0, max_value=100),
        worker=workers,
        own=st.sampled_from([True, True, False]),
    )
    def complete(self, choice: int, worker: str, own: bool) -> None:
        entry_id, owner = self.running_entry(choice, worker)
        if entry_id is None:
            return
        as_worker = owner if own else f"not-{owner}"
        done = self.change(
            lambda: transfers.transfer_complete(entry_id=entry_id, worker=as_worker, result_url=""),
            self.one_event,
        )
        assert (done is not None) == own

    @precondition(lambda self: self.running)
    @rule(choice=st.integers(min_value=0, max_value=100), worker=workers)
    def fail(self, choice: int, worker: str) -> None:
        entry_id, owner = self.running_entry(choice, worker)
        if entry_id is None:
            return
        assert self.change(
            lambda: fail_transfer(entry_id=entry_id, worker=owner, error="404"), self.one_event
        )
        assert QueueEntry.objects.get(pk=entry_id).status == EntryStatus.FAILED

    @precondition(lambda self: self.running)
    @rule(
        choice=st.integers(min_value=0, max_value=100),
        worker=workers,
        delay=st.sampled_from([0, 3600]),
    )
    def wait_to_retry(self, choice: int, worker: str, delay: int) -> None:
        entry_id, owner = self.running_entry(choice, worker)
        if entry_id is None:
            return
        entry = QueueEntry.objects.get(pk=entry_id)
        assert self.change(
            lambda: wait_to_retry(
                entry_id=entry_id, worker=owner, error="503", delay_seconds=delay
            ),
            self.one_event,
        )
        out_of_attempts = entry.attempts >= entry.max_attempts
        expected = EntryStatus.FAILED if out_of_attempts else EntryStatus.RETRYING
        assert QueueEntry.objects.get(pk=entry_id).status == expected

    @rule(choice=entry_choice)
    def retry(self, choice: int) -> None:
        entry_id = self.pick(choice, EntryStatus.FAILED, EntryStatus.CANCELLED)
        entry = QueueEntry.objects.filter(pk=entry_id).first()
        before = self.before_joining()
        retried = self.change(lambda: line.entry_retry(entry_id=entry_id), self.one_event)
        allowed = (
            entry is not None
            and entry.status in (EntryStatus.FAILED, EntryStatus.CANCELLED)
            and not QueueEntry.objects.filter(
                meeting_id=entry.meeting_id, status__in=ACTIVE_STATUSES
            )
            .exclude(pk=entry_id)
            .exists()
        )
        assert (retried is not None) == allowed
        if retried is not None:
            self.assert_joined(before, [entry_id])
            assert retried.attempts == 0

    @rule(
        picks=st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=6),
        as_user=st.integers(min_value=0, max_value=1),
        missing=st.booleans(),
    )
    def bulk_enqueue(self, picks: list[int], as_user: int, missing: bool) -> None:
        owner = self.users[as_user]
        ids = [self.meetings[p % len(self.meetings)].pk for p in picks]
        if missing:
            ids.append(10**9)
        expected: dict[str, str] = {}
        for pk in dict.fromkeys(ids):
            meeting = Meeting.objects.filter(pk=pk).first()
            if meeting is None:
                expected[str(pk)] = "not_found"
            elif meeting.owner_id != owner.pk:
                expected[str(pk)] = "not_yours"
            elif QueueEntry.objects.filter(meeting=meeting, status__in=ACTIVE_STATUSES).exists():
                expected[str(pk)] = "already_queued"
        before = self.before_joining()

        def call() -> Any:
            result = line.entries_enqueue(owner=owner, meeting_ids=ids)
            return result if result.entries else None

        result = self.change(call, self.one_event)
        refused = {r.id: r.code for r in (result.refused if result else [])}
        if result is None:
            assert len(expected) == len(dict.fromkeys(ids))
            return
        assert refused == expected
        created = [str(entry.pk) for entry in result.entries]
        self.assert_joined(before, created)
        # One owner's entries join in the order given (each a round after the one before).
        assert [pk for pk in line_ids() if pk in created] == created
        wanted = [str(pk) for pk in dict.fromkeys(ids) if str(pk) not in expected]
        assert [str(e.meeting_id) for e in result.entries] == wanted

    @rule(
        choices=st.lists(entry_choice, min_size=1, max_size=5),
        as_staff=st.booleans(),
        retry=st.booleans(),
    )
    def bulk_cancel_or_retry(self, choices: list[int], as_staff: bool, retry: bool) -> None:
        statuses = (EntryStatus.FAILED, EntryStatus.CANCELLED) if retry else ACTIVE_STATUSES
        ids = [self.pick(choice, *statuses) for choice in choices]
        owner = None if as_staff else self.users[0]
        service = line.entries_retry if retry else line.entries_cancel
        before = self.before_joining()

        def call() -> Any:
            result = service(entry_ids=ids, owner=owner)
            return result if result.entries else None

        result = self.change(call, self.one_event)
        if result is None:
            return
        target = EntryStatus.QUEUED if retry else EntryStatus.CANCELLED
        for entry in result.entries:
            assert QueueEntry.objects.get(pk=entry.pk).status == target
            assert as_staff or entry.owner_id == self.users[0].pk
        if retry:
            self.assert_joined(before, [str(entry.pk) for entry in result.entries])

    @rule()
    def clear(self) -> None:
        waiting = QueueEntry.objects.filter(
            status__in=[EntryStatus.QUEUED, EntryStatus.RETRYING]
        ).count()
        running = QueueEntry.objects.filter(status=EntryStatus.RUNNING).count()
        assert self.change(line.queue_clear, lambda n: 1) == waiting
        assert QueueEntry.objects.filter(status__in=ACTIVE_STATUSES).count() == running

    @rule(paused=st.booleans())
    def pause_or_resume(self, paused: bool) -> None:
        state = QueueState.objects.filter(pk=1).first()
        was_paused = bool(state and state.paused)
        done = self.change(line.queue_pause if paused else line.queue_resume, self.one_event)
        assert done == (was_paused != paused)
        assert QueueState.objects.get(pk=1).paused == paused

    @precondition(lambda self: self.running)
    @rule(expire=st.lists(st.booleans(), max_size=CONCURRENCY))
    def requeue_expired(self, expire: list[bool]) -> None:
        # Setup, not the service under test: some workers stopped heartbeating long ago.
        running = list(
            QueueEntry.objects.filter(status=EntryStatus.RUNNING)
            .order_by("started_at")
            .values_list("id", flat=True)
        )
        expired = [pk for pk, flag in zip(running, expire, strict=False) if flag]
        QueueEntry.objects.filter(pk__in=expired).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
        count = len(self.change(transfers.transfers_requeue_expired, len))
        assert count == len(expired)
        back = [str(pk) for pk in expired if QueueEntry.objects.get(pk=pk).status == "queued"]
        # Back at the front of the line, in the order they were first claimed (pinned there).
        assert line_ids()[: len(back)] == back
        self.pinned.update(back)

    # --- after every step ----------------------------------------------------------------

    @invariant()
    def queue_is_consistent_and_clients_follow(self) -> None:
        assert_invariants()
        # One snapshot per viewer serves both checks: a snapshot is most of a step's time.
        snapshots = snapshots_for(self.viewers)
        assert_snapshot_matches_rows(self.viewers, snapshots)
        self.clients.catch_up()
        self.clients.assert_match_fresh_snapshots(snapshots)
        self.running = QueueEntry.objects.filter(status=EntryStatus.RUNNING).exists()
        self.pinned &= set(line_ids())
        # Fair share's current round is never past an entry's that is not pinned.
        state = QueueState.objects.filter(pk=1).first()
        rounds = [
            ordering.round_of(key)
            for pk, key in selectors.queued_entries().values_list("id", "order_key")
            if str(pk) not in self.pinned
        ]
        assert not rounds or state.head_round <= min(rounds)


@pytest.mark.django_db
@pytest.mark.parametrize("ordering_rule", ["fair", "fifo"])
def test_queue_services_keep_their_promises(
    alice, bob, staff, make_meeting, settings, ordering_rule, monkeypatch
) -> None:
    settings.QUEUE_ORDERING = ordering_rule
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    settings.QUEUE_CONCURRENCY = CONCURRENCY
    settings.QUEUE_MAX_ATTEMPTS = 2  # so that max_attempts is reached within a run
    assert django_settings.QUEUE_CONCURRENCY == CONCURRENCY
    QueueMachine.users = [alice, bob, staff]
    QueueMachine.viewers = [alice, bob, staff, None]
    # Windows of a few places (protocol version 2), so that the machine's short lines
    # reach past them: entries enter and leave windows, and own entries stand outside.
    monkeypatch.setattr(events, "HEAD_PLACES", 2)
    monkeypatch.setattr(events, "STAFF_HEAD_PLACES", 4)
    QueueMachine.meetings = [make_meeting(owner) for owner in (alice, bob) * 4]
    QueueMachine.outcomes = Counter()
    run_state_machine_as_test(QueueMachine, settings=MACHINE_SETTINGS)
    # Guard against a machine that only ever refuses or enqueues: the runs must have made
    # changes of several kinds and been refused too (typically 8-10 kinds and 3-4 codes).
    done = {kind for kind in QueueMachine.outcomes if kind.startswith("done:")}
    refused = {kind for kind in QueueMachine.outcomes if kind.startswith("refused:")}
    assert len(done) >= 5 and len(refused) >= 2, QueueMachine.outcomes
