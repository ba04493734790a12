"""Waiting times from what the fleet really does (docs/estimates.md).

1. How long a transfer takes: fitted on the newest completed attempts (TransferAttempt),
   as `base + rate x recording length` when Fathom gave the meetings' durations (the
   size a transfer moves grows with it), else their median.
2. How many run at once: QUEUE_CONCURRENCY slots (or more, if more are running).
3. Then the line is played forward: each slot is free when its running transfer should
   end (its predicted time less what has elapsed); the next entry goes to the first free
   slot, entries waiting to retry before the line once their wait is over, as the
   dispatcher does. An entry's estimate is when its transfer should end.

No estimate while the queue is paused (nothing starts) or before any transfer has
completed (nothing to go by): the pages say so instead of guessing.
"""

from __future__ import annotations

import functools
import heapq
import math
import statistics
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from queue_app import sql
from queue_app.models import (
    AttemptOutcome,
    EntryStatus,
    Meeting,
    QueueEntry,
    QueueState,
    TransferAttempt,
)

# The newest completed attempts the model learns from: enough to average out one slow
# transfer, few enough to follow a change (a slower uploader, a faster network).
SAMPLE_SIZE = 50
# Fewer sized samples than this, or a fit that says longer meetings go faster: the median.
MIN_SIZED_SAMPLES = 5
# GET /api/estimates plays the whole line forward; the pages ask after every event that
# changes it, so many at once. Between two changes (the same seq) the schedule moves with
# the clock alone: a request within this many seconds of the last play-forward in this
# process takes it, aged by the time since, instead of reading the whole line again.
REUSE_SECONDS = 2.0
# A running transfer past its prediction is "about to end", not "done": a floor, so it
# never shows 0 s while it still runs.
OVERRUN_FLOOR = 0.05


@dataclass(frozen=True)
class Model:
    """Seconds a transfer takes: base + rate x recording seconds (rate None: typical)."""

    typical: float
    base: float = 0.0
    rate: float | None = None
    samples: int = 0

    def predict(self, recording_seconds: float | None) -> float:
        if self.rate is None or recording_seconds is None:
            return self.typical
        return max(self.base + self.rate * recording_seconds, 0.0)


def fit(samples: Iterable[tuple[float | None, float]]) -> Model | None:
    """The model of (recording seconds or None, transfer seconds) pairs; None if empty."""
    samples = [(size, max(seconds, 0.0)) for size, seconds in samples]
    if not samples:
        return None
    typical = statistics.median(seconds for _, seconds in samples)
    sized = [(float(size), seconds) for size, seconds in samples if size]
    if len(sized) < MIN_SIZED_SAMPLES:
        return Model(typical=typical, samples=len(samples))
    mean_x = statistics.fmean(x for x, _ in sized)
    mean_y = statistics.fmean(y for _, y in sized)
    spread = sum((x - mean_x) ** 2 for x, _ in sized)
    if spread <= 0:
        return Model(typical=typical, samples=len(samples))
    rate = sum((x - mean_x) * (y - mean_y) for x, y in sized) / spread
    if rate <= 0:
        return Model(typical=typical, samples=len(samples))
    return Model(typical=typical, base=mean_y - rate * mean_x, rate=rate, samples=len(samples))


ACTIVE = (EntryStatus.RUNNING, EntryStatus.QUEUED, EntryStatus.RETRYING)


@dataclass(frozen=True)
class Job:
    """An active entry as the schedule sees it. `elapsed`: seconds it has run (running);
    `ready_in`: seconds until its retry may start (retrying)."""

    id: Any
    status: str
    recording_seconds: float | None = None
    elapsed: float = 0.0
    ready_in: float = 0.0


@dataclass(frozen=True)
class Estimate:
    starts_in: float
    done_in: float


def schedule(model: Model, slots: int, jobs: list[Job]) -> dict[Any, Estimate]:
    """When each job should start and end, in seconds from now. `jobs`: running ones, then
    the line in order, and retrying ones (anywhere)."""
    result: dict[Any, Estimate] = {}
    free: list[float] = []
    for job in jobs:
        if job.status == EntryStatus.RUNNING:
            total = model.predict(job.recording_seconds)
            left = max(total - job.elapsed, total * OVERRUN_FLOOR)
            result[job.id] = Estimate(starts_in=0.0, done_in=left)
            free.append(left)
    slots = max(slots, len(free), 1)
    free.extend([0.0] * (slots - len(free)))
    heapq.heapify(free)
    line = [job for job in jobs if job.status == EntryStatus.QUEUED]
    retries = sorted(
        (job for job in jobs if job.status == EntryStatus.RETRYING), key=lambda j: j.ready_in
    )
    head = 0
    while head < len(line) or retries:
        at = heapq.heappop(free)
        if retries and (retries[0].ready_in <= at or head >= len(line)):
            job = retries.pop(0)
            start = max(at, job.ready_in)
        else:
            job, start = line[head], at
            head += 1
        done = start + model.predict(job.recording_seconds)
        result[job.id] = Estimate(starts_in=start, done_in=done)
        heapq.heappush(free, done)
    return result


def current_model(*, limit: int = SAMPLE_SIZE) -> Model | None:
    """The model of the newest `limit` completed transfers, or None if none completed.
    Every snapshot reads it (PlaceEstimates): one plain statement, built once, with the
    ORM's conversions of its datetimes (queue_app.sql)."""
    select, found = _model_sql()
    rows = sql.converted(sql.rows(select, [AttemptOutcome.COMPLETED.value, limit]), found)
    return fit((size, (finished - started).total_seconds()) for started, finished, size in rows)


@functools.cache
def _model_sql() -> tuple[str, sql.Converters]:
    """current_model's statement: (started, finished, the meeting's duration) of the newest
    completed attempts, newest first; and the converters of its columns."""
    entry_pk, entry = sql.column(QueueEntry, "id"), sql.column(TransferAttempt, "entry")
    meeting_pk = sql.column(Meeting, "id")
    started, finished, outcome = (
        sql.column(TransferAttempt, name) for name in ("started_at", "finished_at", "outcome")
    )
    select = (
        f"SELECT a.{started}, a.{finished}, m.{sql.column(Meeting, 'duration_seconds')}"
        f" FROM {sql.table(TransferAttempt)} a"
        f" JOIN {sql.table(QueueEntry)} e ON e.{entry_pk} = a.{entry}"
        f" JOIN {sql.table(Meeting)} m ON m.{meeting_pk} = e.{sql.column(QueueEntry, 'meeting')}"
        f" WHERE a.{outcome} = %s AND a.{finished} IS NOT NULL"
        f" ORDER BY a.{finished} DESC LIMIT %s"
    )
    fields = [
        TransferAttempt._meta.get_field("started_at"),
        TransferAttempt._meta.get_field("finished_at"),
        Meeting._meta.get_field("duration_seconds"),
    ]
    return select, sql.converters(fields)


def slot_count() -> int:
    """How many transfers run at once: the configured slots, or more if more run now."""
    running = QueueEntry.objects.filter(status=EntryStatus.RUNNING).count()
    return max(settings.QUEUE_CONCURRENCY, running)


def active_jobs(now: datetime) -> list[Job]:
    """Every active entry as a Job: running ones, then the line in order, then retries."""
    rows = QueueEntry.objects.filter(status__in=ACTIVE).values_list(
        "id", "status", "meeting__duration_seconds", "started_at", "next_attempt_at"
    )
    jobs = []
    for pk, status, size, started_at, next_attempt_at in rows.order_by("order_key", "created_at"):
        elapsed = (now - started_at).total_seconds() if started_at else 0.0
        ready_in = (next_attempt_at - now).total_seconds() if next_attempt_at else 0.0
        jobs.append(
            Job(
                id=pk,
                status=status,
                recording_seconds=size,
                elapsed=max(elapsed, 0.0) if status == EntryStatus.RUNNING else 0.0,
                ready_in=max(ready_in, 0.0),
            )
        )
    return jobs


@dataclass(frozen=True)
class LineEstimates:
    """Estimates for every active entry, or why there are none (`reason`)."""

    paused: bool
    estimates: dict[Any, Estimate]
    reason: str = ""
    model: Model | None = None
    slots: int = 0

    def done_in(self, entry_id: Any) -> int | None:
        estimate = self.estimates.get(entry_id)
        return round(estimate.done_in) if estimate is not None else None

    def done_in_row(self, row: dict[str, Any], position: int | None) -> int | None:
        return self.done_in(row["id"])

    def aged(self, seconds: float) -> LineEstimates:
        """The same schedule `seconds` later, nothing having changed meanwhile."""
        return replace(
            self,
            estimates={
                pk: Estimate(max(e.starts_in - seconds, 0.0), max(e.done_in - seconds, 0.0))
                for pk, e in self.estimates.items()
            },
        )


@dataclass(frozen=True)
class PlaceEstimates:
    """Estimates without a pass over the line, for the windows snapshots carry (protocol
    version 2: a socket's snapshot must not cost the line's length). An entry at place p
    ends after ceil(p / slots) + 1 typical transfers; a running one when its prediction
    runs out. The pages then ask GET /api/estimates (line_estimates) for the viewer's own
    entries, played forward through the whole line."""

    paused: bool
    model: Model | None
    slots: int
    now: datetime

    def done_in_row(self, row: dict[str, Any], position: int | None) -> int | None:
        if self.model is None:
            return None
        typical = self.model.typical
        if row["status"] == EntryStatus.RUNNING:
            started = row.get("started_at")
            elapsed = (self.now - started).total_seconds() if started else 0.0
            return round(max(typical - elapsed, typical * OVERRUN_FLOOR))
        if self.paused or position is None:
            return None
        return round((math.ceil(position / max(self.slots, 1)) + 1) * typical)


def place_estimates(
    *, now: datetime | None = None, state: QueueState | None = None
) -> PlaceEstimates:
    """PlaceEstimates as the fleet is now: a few small reads, whatever the line's length.
    `state`: the queue state the caller has just read (paused, running), spared a read."""
    if state is None:
        paused = bool(QueueState.objects.filter(pk=1).values_list("paused", flat=True).first())
        slots = slot_count()
    else:
        paused, slots = state.paused, max(settings.QUEUE_CONCURRENCY, state.running)
    return PlaceEstimates(paused, current_model(), slots, now or timezone.now())


def line_estimates(*, now: datetime | None = None) -> LineEstimates:
    """When each active entry should be done, from the fleet as it is now."""
    now = now or timezone.now()
    paused = bool(QueueState.objects.filter(pk=1).values_list("paused", flat=True).first())
    model = current_model()
    if model is None:
        return LineEstimates(paused, {}, reason="no_history")
    slots = slot_count()
    estimates = schedule(model, slots, active_jobs(now))
    if paused:
        # Running transfers finish; nothing else starts until staff resume.
        running = set(
            QueueEntry.objects.filter(status=EntryStatus.RUNNING).values_list("id", flat=True)
        )
        estimates = {pk: e for pk, e in estimates.items() if pk in running}
        return LineEstimates(True, estimates, reason="paused", model=model, slots=slots)
    return LineEstimates(False, estimates, model=model, slots=slots)


_shared_lock = threading.Lock()
_shared: tuple[tuple[Any, ...], datetime, LineEstimates] | None = None


def shared_line_estimates(*, now: datetime | None = None) -> LineEstimates:
    """line_estimates(), shared by the requests of one process between two changes of the
    queue: the first after a change plays the line forward (others asking meanwhile wait
    for it rather than each reading the line), the next within REUSE_SECONDS take its
    schedule aged by the clock. A change appends an event, so (last seq, when the state
    was saved) tells that nothing moved."""
    global _shared
    now = now or timezone.now()
    key = tuple(QueueState.objects.filter(pk=1).values_list("last_seq", "updated_at").first() or ())
    with _shared_lock:
        if _shared is not None and key and _shared[0] == key:
            age = (now - _shared[1]).total_seconds()
            if 0 <= age <= REUSE_SECONDS:
                return _shared[2].aged(age)
        line = line_estimates(now=now)
        _shared = (key, now, line) if key else None
        return line


def current_pause_note() -> str:
    """Staff's word on why the queue is paused, or ""."""
    return QueueState.objects.filter(pk=1).values_list("pause_note", flat=True).first() or ""


def estimates_for(*, user: Any, now: datetime | None = None) -> dict[str, Any]:
    """GET /api/estimates: the viewer's entries' estimates (staff: every entry's), the
    model's inputs, and why there are none when there are none."""
    now = now or timezone.now()
    line = shared_line_estimates(now=now)
    if user.is_staff:
        visible = set(line.estimates)
    else:  # the viewer's own active entries: an index read, not the line's ids
        visible = set(
            QueueEntry.objects.filter(owner_id=user.pk, status__in=ACTIVE).values_list(
                "id", flat=True
            )
        )
    return {
        "paused": line.paused,
        "pause_note": current_pause_note() if line.paused else "",
        "reason": line.reason,
        "slots": line.slots,
        "typical_transfer_seconds": round(line.model.typical, 1) if line.model else None,
        "samples": line.model.samples if line.model else 0,
        "computed_at": now.isoformat().replace("+00:00", "Z"),
        "entries": [
            {
                "id": str(pk),
                "starts_in_seconds": round(estimate.starts_in),
                "eta_seconds": round(estimate.done_in),
            }
            for pk, estimate in line.estimates.items()
            if pk in visible
        ],
    }
