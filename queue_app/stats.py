"""The monitor's charts: throughput, failures and waiting time over a window, in equal
intervals, from the attempt history (so a failure retried since still counts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Exists, OuterRef
from django.utils import timezone

from queue_app.models import AttemptOutcome, TransferAttempt


@dataclass(frozen=True)
class Window:
    span: timedelta
    step: timedelta


# An hour by the minute, a day by the quarter hour: 60 and 96 points.
WINDOWS = {
    "hour": Window(span=timedelta(hours=1), step=timedelta(minutes=1)),
    "day": Window(span=timedelta(days=1), step=timedelta(minutes=15)),
}


def activity(*, window: str, now: datetime | None = None) -> dict[str, Any]:
    """Per interval of `window` ("hour" or "day"), ending with the current one:

    - `times`: each interval's start, in Unix seconds;
    - `completed`, `failed` (for good), `retrying` (failed, will retry): attempts that
      ended in the interval;
    - `wait_seconds`: the mean wait in line of the transfers that started in it (from
      joining the line to a worker taking it, first attempts only: a retried entry's
      created_at says nothing about its second wait), or None where none started.
    """
    shape = WINDOWS[window]
    step = shape.step.total_seconds()
    now = now or timezone.now()
    count = int(shape.span / shape.step)
    # Intervals aligned to the step, so that a chart redrawn a minute later shifts by one
    # point instead of changing every point.
    end = (int(now.timestamp() // step) + 1) * step
    start = end - count * step
    since = datetime.fromtimestamp(start, tz=now.tzinfo or timezone.get_current_timezone())

    def index(moment: datetime) -> int | None:
        i = int((moment.timestamp() - start) // step)
        return i if 0 <= i < count else None

    ended = {AttemptOutcome.COMPLETED: [0] * count, AttemptOutcome.FAILED: [0] * count}
    ended[AttemptOutcome.RETRYING] = [0] * count
    finished = TransferAttempt.objects.filter(finished_at__gte=since, outcome__in=list(ended))
    for finished_at, outcome in finished.values_list("finished_at", "outcome").iterator():
        i = index(finished_at)
        if i is not None:
            ended[outcome][i] += 1

    earlier = TransferAttempt.objects.filter(
        entry=OuterRef("entry"), started_at__lt=OuterRef("started_at")
    )
    first_starts = TransferAttempt.objects.filter(started_at__gte=since).filter(~Exists(earlier))
    waits = [0.0] * count
    started = [0] * count
    for started_at, joined in first_starts.values_list("started_at", "entry__created_at"):
        i = index(started_at)
        if i is not None:
            waits[i] += max((started_at - joined).total_seconds(), 0.0)
            started[i] += 1
    return {
        "window": window,
        "step_seconds": int(step),
        "times": [int(start + i * step) for i in range(count)],
        "completed": ended[AttemptOutcome.COMPLETED],
        "failed": ended[AttemptOutcome.FAILED],
        "retrying": ended[AttemptOutcome.RETRYING],
        "wait_seconds": [
            round(total / n, 1) if n else None for total, n in zip(waits, started, strict=True)
        ],
    }


def error_kinds() -> list[str]:
    """Every error kind an attempt has failed with, for the monitor's filter (by the
    outcome index, not a scan of every attempt)."""
    failed = TransferAttempt.objects.filter(
        outcome__in=[AttemptOutcome.FAILED, AttemptOutcome.RETRYING]
    )
    kinds = failed.exclude(error_kind="").values_list("error_kind", flat=True)
    return sorted(set(kinds.distinct()))
