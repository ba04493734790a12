"""Waiting times from what the fleet really does (issue 15, docs/estimates.md).

The main test drives a simulated fleet through the real services (claim, complete) on a
simulated clock: three slots, transfers whose time grows with the meeting's length (plus
or minus 10%), 50 entries of varied sizes. At the start and at checkpoints along the run,
queue_app.estimates says when each waiting or running entry will be done; at the end
every estimate is compared with when it really was done: within 25% of the real wait
(for a transfer already running, within 10% of its whole time when that is more).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from queue_app import estimates, selectors
from queue_app.models import EntryStatus, QueueEntry
from queue_app.services import line, transfers
from tests.queue_helpers import wait_to_retry

pytestmark = pytest.mark.django_db

SLOTS = 3
WORKER = "sim"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance_to(self, moment: datetime) -> None:
        assert moment >= self.now
        self.now = moment


@pytest.fixture
def clock(monkeypatch, settings) -> Clock:
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    settings.QUEUE_CONCURRENCY = SLOTS
    clock = Clock()
    # Every timezone.now() of the services, the estimates and auto_now fields reads it.
    monkeypatch.setattr(timezone, "now", clock)
    return clock


class Fleet:
    """SLOTS workers that take the head of the line whenever one is free, through the real
    services, and take `seconds(size)` of simulated time per transfer."""

    def __init__(self, clock: Clock, rng: random.Random) -> None:
        self.clock = clock
        self.rng = rng
        self.running: dict = {}  # entry id -> when it will end
        self.finished: dict = {}  # entry id -> when it ended
        self.took: dict = {}  # entry id -> seconds its transfer took

    def seconds(self, size: int | None) -> float:
        # Fixed costs (asking Fathom for the download) plus the bytes, which grow with the
        # recording's length; real transfers vary, so +-10%.
        base = 3.0 + 0.008 * (size if size is not None else 1800)
        return base * self.rng.uniform(0.9, 1.1)

    def fill(self) -> None:
        while (entry := transfers.transfer_claim_next(worker=WORKER)) is not None:
            took = self.seconds(entry.meeting.duration_seconds)
            self.took[entry.pk] = took
            self.running[entry.pk] = self.clock.now + timedelta(seconds=took)

    def step(self) -> None:
        """Advance to the next end of a transfer, complete it, hand out the free slot."""
        entry_id, ends = min(self.running.items(), key=lambda item: item[1])
        self.clock.advance_to(ends)
        del self.running[entry_id]
        transfers.transfer_complete(entry_id=entry_id, worker=WORKER, result_url="")
        self.finished[entry_id] = ends
        self.fill()

    def run_until_idle(self, on_step=None) -> None:
        self.fill()
        while self.running:
            self.step()
            if on_step is not None:
                on_step(len(self.finished))


def enqueue(make_meeting, owner, sizes) -> list[QueueEntry]:
    entries = []
    for n, size in enumerate(sizes):
        meeting = make_meeting(owner, f"Meeting {n}")
        meeting.duration_seconds = size
        meeting.save(update_fields=["duration_seconds"])
        entries.append(line.entry_enqueue(meeting=meeting))
    return entries


def test_estimates_are_within_a_quarter_of_the_real_wait(clock, alice, make_meeting):
    rng = random.Random(15)
    fleet = Fleet(clock, rng)
    # What the fleet did before: 20 transfers of meetings from 5 to 90 minutes.
    enqueue(make_meeting, alice, [rng.randint(300, 5400) for _ in range(20)])
    fleet.run_until_idle()
    assert estimates.current_model().rate is not None  # sizes known: the fitted model

    # 50 transfers of varied sizes join the line at once.
    enqueue(make_meeting, alice, [rng.randint(120, 7200) for _ in range(50)])
    predictions = []  # (when asked, entry id, running then?, seconds until done as estimated)

    def ask() -> None:
        line_now = estimates.line_estimates()
        assert not line_now.paused and line_now.reason == ""
        active = set(
            QueueEntry.objects.filter(
                status__in=[EntryStatus.QUEUED, EntryStatus.RUNNING]
            ).values_list("id", flat=True)
        )
        assert set(line_now.estimates) == active  # every active entry has one
        for entry_id, estimate in line_now.estimates.items():
            predictions.append((clock.now, entry_id, entry_id in fleet.running, estimate.done_in))

    ask()  # before any of them starts
    fleet.fill()
    ask()  # three running, 47 waiting
    fleet.run_until_idle(on_step=lambda done: done % 7 == 0 and ask())

    assert len(fleet.finished) == 70
    misses = []
    for asked, entry_id, was_running, estimated in predictions:
        real = (fleet.finished[entry_id] - asked).total_seconds()
        # A transfer about to end has seconds left, and +-10% of its whole time is more
        # than 25% of those: running ones may miss by 10% of their whole time instead.
        slack = 0.1 * fleet.took[entry_id] if was_running else 0.0
        if abs(estimated - real) > max(0.25 * real, slack):
            misses.append((entry_id, round(estimated, 1), round(real, 1)))
    assert len(predictions) > 250
    assert not misses, f"{len(misses)} of {len(predictions)} estimates off by >25%: {misses[:5]}"


def test_the_old_guess_would_fail_this_check(clock, alice, make_meeting):
    """The check above can fail: one typical time for every transfer (ignoring sizes),
    as the pages used before, is off by more than 25% for short and long meetings."""
    rng = random.Random(15)
    fleet = Fleet(clock, rng)
    enqueue(make_meeting, alice, [rng.randint(300, 5400) for _ in range(20)])
    fleet.run_until_idle()
    model = estimates.current_model()
    sizes = [120, 7200, 150, 6000]
    typical = estimates.Model(typical=model.typical)
    fitted = [model.predict(size) for size in sizes]
    naive = [typical.predict(size) for size in sizes]
    real = [3.0 + 0.008 * size for size in sizes]
    assert all(abs(f - r) <= 0.15 * r for f, r in zip(fitted, real, strict=True))
    assert any(abs(n - r) > 0.25 * r for n, r in zip(naive, real, strict=True))


def test_no_estimate_before_any_transfer_completed(clock, alice, make_meeting):
    enqueue(make_meeting, alice, [600, 600])

    line_now = estimates.line_estimates()

    assert line_now.reason == "no_history" and line_now.estimates == {}
    assert [e["eta_seconds"] for e in selectors.queue_snapshot()["queue"]] == [None, None]


def test_no_estimate_for_the_line_while_paused(clock, alice, make_meeting):
    fleet = Fleet(clock, random.Random(1))
    enqueue(make_meeting, alice, [600] * 3)
    fleet.run_until_idle()
    entries = enqueue(make_meeting, alice, [600] * 5)
    fleet.fill()  # three run
    line.queue_pause()

    line_now = estimates.line_estimates()

    running = {e.pk for e in entries if QueueEntry.objects.get(pk=e.pk).status == "running"}
    assert line_now.paused and line_now.reason == "paused"
    assert set(line_now.estimates) == running  # they finish; nothing else starts
    snapshot = selectors.queue_snapshot()
    for entry in snapshot["queue"]:
        assert (entry["eta_seconds"] is None) == (entry["status"] == "queued")


def test_a_retry_waits_for_its_time_then_goes_before_the_line(clock, alice, make_meeting):
    fleet = Fleet(clock, random.Random(2))
    enqueue(make_meeting, alice, [1000] * 3)
    fleet.run_until_idle()
    model = estimates.current_model()
    flaky, *rest = enqueue(make_meeting, alice, [1000] * 5)
    claimed = transfers.transfer_claim_next(worker=WORKER)
    assert claimed.pk == flaky.pk
    wait_to_retry(entry_id=flaky.pk, worker=WORKER, error="busy", delay_seconds=40)

    line_now = estimates.line_estimates()

    one = model.predict(1000)
    assert one < 40
    # Three slots: three of the line start now and the fourth when the first slot frees;
    # the retry does not hold the line up, and starts once its 40 s wait is over.
    assert [line_now.estimates[e.pk].starts_in for e in rest] == pytest.approx([0, 0, 0, one])
    assert line_now.estimates[flaky.pk].starts_in == pytest.approx(40)
    assert line_now.estimates[flaky.pk].done_in == pytest.approx(40 + one)


def test_the_model_falls_back_to_the_median_without_sizes():
    model = estimates.fit([(None, 10.0), (None, 30.0), (None, 20.0), (600, 12.0)])
    assert model.rate is None and model.predict(600) == 16.0  # the median
    assert estimates.fit([]) is None
    # Longer meetings never predicted faster: a negative slope falls back too.
    inverse = estimates.fit([(size, 100 - size / 100) for size in range(600, 6000, 600)])
    assert inverse.rate is None


def test_requests_between_two_changes_share_one_play_forward(
    clock, alice, bob, staff, make_meeting, monkeypatch
):
    """GET /api/estimates after an event comes from many pages at once: the first plays
    the line forward, the next within REUSE_SECONDS take it aged by the clock, exactly
    what a new play-forward gives; a change of the line plays it again."""
    fleet = Fleet(clock, random.Random(3))
    enqueue(make_meeting, alice, [600] * 3)
    fleet.run_until_idle()
    mine = enqueue(make_meeting, alice, [900] * 4)
    theirs = enqueue(make_meeting, bob, [300] * 2)
    fleet.fill()  # three run, the rest wait
    reads = []
    monkeypatch.setattr(
        estimates,
        "active_jobs",
        lambda now, real=estimates.active_jobs: reads.append(now) or real(now),
    )

    first = estimates.estimates_for(user=alice)
    clock.advance_to(clock.now + timedelta(seconds=1.5))
    later = estimates.estimates_for(user=alice)

    assert len(reads) == 1  # the second request read no line
    assert later == estimates.estimates_for(user=alice, now=clock.now)
    fresh = estimates.line_estimates()  # a play-forward of its own, at the same moment
    assert {e["id"]: e["eta_seconds"] for e in later["entries"]} == {
        str(pk): round(fresh.estimates[pk].done_in) for pk in (e.pk for e in mine)
    }
    assert {e["id"] for e in first["entries"]} == {str(e.pk) for e in mine}  # own only
    assert {e["id"] for e in estimates.estimates_for(user=staff)["entries"]} == {
        str(e.pk) for e in [*mine, *theirs]
    }

    assert len(reads) == 2  # the requests none more; `fresh` one

    line.entry_move(entry_id=theirs[-1].pk, position=1)  # the line changed: read it again
    estimates.estimates_for(user=alice)
    assert len(reads) == 3
    clock.advance_to(clock.now + timedelta(seconds=estimates.REUSE_SECONDS + 1))
    estimates.estimates_for(user=alice)  # too old to age: read again
    assert len(reads) == 4
