"""Two real beat processes on one deployment: both send every tick, the work runs once.

Beat sends the lease reaper every second here (the dispatch tick and pruning are set far
beyond the test's few seconds, so every periodic message in the window is the reaper's);
the session's Celery worker runs them through `fathomloom.periodic`, whose result in the
worker's log is the reaper's count when it ran and None when it skipped.
"""

from __future__ import annotations

import itertools
import re
import time
from datetime import datetime

import pytest

from tests.processes import start_beat

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

INTERVAL = 1.0
WINDOW = 6.0
# "2026-12-02 13:22:07,137 INFO celery.app.trace 13780 Task fathomloom.periodic[…] succeeded
# in 0.22s: 0": when it ended, how long it took, and what it returned.
FINISHED = re.compile(
    r"^(\S+ \S+) INFO .*Task fathomloom\.periodic\[[0-9a-f-]+\] succeeded in ([\d.e-]+)s: (\S+)"
)


def test_two_beats_run_the_reaper_once_a_tick(process_env, celery_worker, tmp_path):
    env = {
        **process_env,
        "QUEUE_REAPER_SECONDS": str(INTERVAL),
        "QUEUE_DISPATCH_TICK_SECONDS": "3600",
    }
    seen_before = len(celery_worker.output)
    beats = [start_beat(f"celery-beat-{n}", env, tmp_path / f"schedule-{n}") for n in (1, 2)]
    try:
        time.sleep(WINDOW)
    finally:
        for beat in beats:
            beat.stop()
    time.sleep(1.0)  # the last messages reach the worker and finish

    sent = [
        sum("Sending due task requeue-expired" in line for line in beat.output) for beat in beats
    ]
    assert all(count >= WINDOW / INTERVAL - 2 for count in sent), sent
    runs: list[float] = []  # when each run that did the work began, in seconds
    skipped = 0
    for line in celery_worker.output[seen_before:]:
        if match := FINISHED.search(line):
            ended, took, result = match.groups()
            if result == "None":
                skipped += 1
            else:
                at = datetime.strptime(ended, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                runs.append(at - float(took))
    runs.sort()
    gaps = [later - earlier for earlier, later in itertools.pairwise(runs)]
    # Two beats a second apart at any offset put runs within half a second of each other;
    # with the guard, runs claim the tick at least 90% of the interval apart (0.7 here:
    # a run begins a little before it claims, more so on a loaded machine), and the other
    # beat's messages were skipped.
    assert len(runs) >= 3 and skipped >= 3, (runs, skipped, sent)
    assert min(gaps) >= 0.7 * INTERVAL, gaps
