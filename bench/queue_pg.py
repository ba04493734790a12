"""Scenario 4: the queue on PostgreSQL. Enqueues a second, claims under contention,
the snapshot of every position, one move; at 100,000 waiting, a viewer's window snapshot
and its copy of a 2,000-entry bulk event, each against protocol version 1's.

Changes commit as QUEUE_SYNCHRONOUS_COMMIT says (asynchronously by default); single
enqueues are measured that way and with synchronous commit, in the same run.

Claimers are separate processes (python -m bench.queue_pg claimer COUNT), each with its
own connection; each says "ready" once warm and starts on "go", all together, so they
contend.
Each claim is the real transfers.transfer_claim_next(): queue lock, SKIP LOCKED, event, publish.
The same processes first run the floor, the baseline of what this machine allows: the least
a serialised change can be (a row locked, updated, a row inserted, committed: one round
trip, LOCK_FLOOR_SQL), as many times, all together.
Each claimer's first WARM_UP claims (and floor statements) after "go" are not counted, and
every claimer stays until all have finished: see WARM_UP.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT, summary

# Single enqueues: rounds of this many, the rate the median round's.
ENQUEUE_ROUNDS, ENQUEUE_ROUND = 5, 400
# Claimers and claims each: enough claims for a p99 that is not the slowest one alone.
CLAIMERS = ((1, 50), (8, 50), (32, 25))
# Measured in the steady state. Released by one "go", the claimers all start at the same
# instant: for about a lap they crowd the two cores together, and their first two claims
# took 2-3 times the rest (32 claimers: medians 59 and 86 ms against ~40 after). And a
# claimer that exited as soon as it had done took a core from the last claims of the
# others (the interpreter's exit: the last claim's median 64 ms). So each claimer's first
# WARM_UP claims are not counted, nor its first floor statements, and every claimer waits
# until all have finished before it exits (bench/notes.md, "The claims' tail").
WARM_UP = 2
LOCK_FLOOR_TABLES = (
    "CREATE TABLE IF NOT EXISTS bench_lock_floor (id int PRIMARY KEY, n bigint NOT NULL);"
    " INSERT INTO bench_lock_floor VALUES (1, 0) ON CONFLICT DO NOTHING;"
    " CREATE TABLE IF NOT EXISTS bench_lock_floor_log (n bigint, at timestamptz);"
    " TRUNCATE bench_lock_floor_log"
)
LOCK_FLOOR_SQL = (
    "BEGIN; SET LOCAL synchronous_commit = off;"
    " SELECT n FROM bench_lock_floor WHERE id = 1 FOR UPDATE;"
    " UPDATE bench_lock_floor SET n = n + 1 WHERE id = 1;"
    " INSERT INTO bench_lock_floor_log SELECT n, now() FROM bench_lock_floor WHERE id = 1;"
    " COMMIT"
)


def _timed(function: Any, repeat: int) -> list[float]:
    values = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        values.append((time.perf_counter() - started) * 1000)
    return values


def claimer(count: int) -> None:
    import django

    django.setup()
    from django.db import connection

    from queue_app.services import transfers

    connection.ensure_connection()
    transfers.transfer_claim_next(worker="warm-up")  # imports, connection, the publisher's loop
    with connection.cursor() as cursor:
        cursor.execute(LOCK_FLOOR_SQL)
    print("ready", flush=True)
    sys.stdin.readline()  # "go": the floor
    floor = []
    with connection.cursor() as cursor:
        for _ in range(WARM_UP):
            cursor.execute(LOCK_FLOOR_SQL)
        for _ in range(count):
            started = time.perf_counter()
            cursor.execute(LOCK_FLOOR_SQL)
            floor.append((time.perf_counter() - started) * 1000)
    print(json.dumps(floor), flush=True)
    sys.stdin.readline()  # "go": the claims
    start = []  # the first lap's, reported apart
    for _ in range(WARM_UP):
        started = time.perf_counter()
        assert transfers.transfer_claim_next(worker=f"bench-{os.getpid()}") is not None
        start.append((time.perf_counter() - started) * 1000)
    values = []
    for _ in range(count):
        started = time.perf_counter()
        entry = transfers.transfer_claim_next(worker=f"bench-{os.getpid()}")
        values.append((time.perf_counter() - started) * 1000)
        assert entry is not None, "nothing to claim: the bench queue ran dry"
    print(json.dumps({"start": start, "values": values}), flush=True)
    sys.stdin.readline()  # every claimer has finished: exit


def claims(
    env: dict[str, str], claimers: int, per_claimer: int
) -> tuple[list[float], list[float], list[float]]:
    """The claims' times, the floor's (LOCK_FLOOR_SQL) from the same processes, and the
    claims' of the first lap (WARM_UP, not in the first), in ms."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(LOCK_FLOOR_TABLES)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.queue_pg", "claimer", str(per_claimer)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=env,
            text=True,
        )
        for _ in range(claimers)
    ]
    for proc in procs:  # a barrier: every claimer is warm before any starts
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"a claimer did not start: {line!r}")

    def go() -> None:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    go()
    floor: list[float] = []
    for proc in procs:
        assert proc.stdout is not None
        floor += json.loads(proc.stdout.readline())
    go()
    values: list[float] = []
    start: list[float] = []
    for proc in procs:
        assert proc.stdout is not None
        told = json.loads(proc.stdout.readline())
        values += told["values"]
        start += told["start"]
    go()  # all have finished: they exit
    for proc in procs:
        proc.communicate(timeout=60)
    return values, floor, start


def requeue_running() -> None:
    """Put claimed entries back, so that each claimer set starts at the same depth (then
    the queue state's counts from the rows: this goes around the services)."""
    from django.db import connection, transaction

    from queue_app.services import ordering
    from queue_app.services.changes import lock_queue

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE queue_app_queueentry SET status = 'queued', worker = '', started_at = NULL,"
            " lease_expires_at = NULL WHERE status = 'running'"
        )
    with transaction.atomic():
        ordering.recount(lock_queue())


def vacuum(*, everything: bool = False) -> None:
    """VACUUM ANALYZE the entries' table (or every table), as autovacuum would have."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if everything else "VACUUM ANALYZE queue_app_queueentry")


def queued_count() -> int:
    from queue_app.models import EntryStatus, QueueEntry

    return QueueEntry.objects.filter(status=EntryStatus.QUEUED).count()


def window_scenario(log: Any) -> dict[str, Any]:
    """At the line's current depth (100,000): a non-staff viewer's snapshot (its window,
    protocol version 2) against the whole line redacted for it (version 1, the baseline),
    and its copy of one 2,000-entry bulk event against version 1's copy."""
    import json

    from django.contrib.auth import get_user_model

    from bench.setup_data import add_entries
    from queue_app import selectors
    from queue_app.events import Viewer, entry_for_viewer, event_for_viewer, event_message
    from queue_app.models import Meeting, QueueEvent
    from queue_app.services import line

    User = get_user_model()
    viewer_user, _ = User.objects.get_or_create(username="bench-window-viewer")
    bulk_user, _ = User.objects.get_or_create(username="bench-window-bulk")
    add_entries([viewer_user.pk], 3, status="cancelled")
    for meeting in Meeting.objects.filter(owner=viewer_user)[:3]:
        line.entry_enqueue(meeting=meeting)
    viewer = Viewer.of(viewer_user)
    out: dict[str, Any] = {"waiting": selectors.queue_state().waiting}

    selectors.queue_snapshot_for(viewer_user)  # warm
    out["snapshot_ms"] = summary(_timed(lambda: selectors.queue_snapshot_for(viewer_user), 20))
    snapshot = selectors.queue_snapshot_for(viewer_user)
    own = [entry for entry in snapshot["queue"] if entry["mine"]]
    out["snapshot_bytes"] = len(json.dumps(snapshot))
    out["own_bytes"] = len(json.dumps(own))
    out["own_entries"] = len(own)

    def whole_line() -> list[dict[str, Any]]:  # version 1: every active entry
        return [entry_for_viewer(entry, viewer) for entry in selectors.active_entries()]

    started = time.perf_counter()
    baseline = whole_line()
    out["baseline_snapshot_ms"] = (time.perf_counter() - started) * 1000
    out["baseline_snapshot_bytes"] = len(json.dumps(baseline))
    log(
        f"  window snapshot at {out['waiting']:,}: median {out['snapshot_ms']['median']:.1f} ms,"
        f" {out['snapshot_bytes']:,} B ({out['own_bytes']:,} B its own); whole line"
        f" {out['baseline_snapshot_ms']:.0f} ms, {out['baseline_snapshot_bytes']:,} B"
    )

    add_entries([bulk_user.pk], 2000, status="cancelled")
    ids = list(Meeting.objects.filter(owner=bulk_user).values_list("id", flat=True)[:2000])
    started = time.perf_counter()
    result = line.entries_enqueue(owner=bulk_user, meeting_ids=ids)
    out["bulk_ms"] = (time.perf_counter() - started) * 1000
    assert len(result.entries) == 2000, result.refused[:3]
    message = event_message(QueueEvent.objects.order_by("-seq").first())
    out["bulk_event_bytes"] = len(json.dumps(event_for_viewer(message, viewer)))
    out["bulk_event_anonymous_bytes"] = len(json.dumps(event_for_viewer(message, Viewer(None))))
    out["bulk_event_runs"] = len(message["moved"]["inserted"])
    version_1 = {**message, "queue": [entry_for_viewer(e, viewer) for e in message["queue"]]}
    out["baseline_bulk_event_bytes"] = len(json.dumps(version_1))
    log(
        f"  bulk of 2,000: {out['bulk_ms']:.0f} ms; a viewer's copy {out['bulk_event_bytes']} B"
        f" ({out['bulk_event_runs']} runs), version 1's {out['baseline_bulk_event_bytes']:,} B"
    )
    return out


def scenario_queue(env: dict[str, str], owners: list[int], log: Any) -> dict[str, Any]:
    from django.conf import settings
    from django.db import close_old_connections

    from bench.setup_data import add_entries, reset_queue
    from queue_app import selectors
    from queue_app.models import Meeting
    from queue_app.services import line

    result: dict[str, Any] = {}
    reset_queue()

    # Enqueues a second: one process, one line.entry_enqueue() after another; as
    # configured (asynchronous commit by default), then with synchronous commit (the
    # durable baseline, QUEUE_SYNCHRONOUS_COMMIT=on), each from an empty line. In rounds
    # of 400, the rate the median round's: a round lasts under a second, and on this
    # shared machine one slow second moved a single round's rate by a quarter.
    configured = settings.QUEUE_SYNCHRONOUS_COMMIT
    for key, level in (("enqueue", configured), ("enqueue_synchronous", "on")):
        reset_queue()
        add_entries(owners, ENQUEUE_ROUNDS * ENQUEUE_ROUND, status="cancelled")
        meetings = list(Meeting.objects.all()[: ENQUEUE_ROUNDS * ENQUEUE_ROUND])
        vacuum(everything=True)  # the reset's dead rows: or autovacuum runs in the rounds
        settings.QUEUE_SYNCHRONOUS_COMMIT = level
        enqueue_ms, rates = [], []
        for start in range(0, len(meetings), ENQUEUE_ROUND):
            started = time.perf_counter()
            for meeting in meetings[start : start + ENQUEUE_ROUND]:
                t = time.perf_counter()
                line.entry_enqueue(meeting=meeting)
                enqueue_ms.append((time.perf_counter() - t) * 1000)
            rates.append(ENQUEUE_ROUND / (time.perf_counter() - started))
        settings.QUEUE_SYNCHRONOUS_COMMIT = configured
        result[key] = {
            "count": len(meetings),
            "per_second": statistics.median(rates),
            "rounds_per_second": rates,
            "ms": summary(enqueue_ms),
            "synchronous_commit": level,
        }
        log(
            f"  enqueue (synchronous_commit {level}): {result[key]['per_second']:.0f} a second"
            f" (rounds: {', '.join(f'{rate:.0f}' for rate in rates)}),"
            f" median {result[key]['ms']['median']:.1f} ms"
        )

    # Snapshot of every position at 1,000, then 10,000 (claims and a move there), 100,000.
    reset_queue()
    result["positions"] = {}
    for depth in (1_000, 10_000, 100_000):
        add_entries(owners, depth - queued_count())
        vacuum()  # as autovacuum would have, in a queue that grew over time
        selectors.entry_positions()  # warm
        values = _timed(selectors.entry_positions, 20)
        result["positions"][depth] = summary(values)
        log(f"  positions of {depth}: median {summary(values)['median']:.1f} ms")
        if depth == 100_000:
            result["window"] = window_scenario(log)
        if depth != 10_000:
            continue
        snapshot_values = _timed(lambda: selectors.queue_snapshot_for(None), 5)
        result["snapshot_10000"] = summary(snapshot_values)
        ids = [str(pk) for pk in selectors.queued_entries().values_list("id", flat=True)]
        rng = random.Random(3)
        move_values = _timed(
            lambda ids=ids, rng=rng: line.entry_move(
                entry_id=rng.choice(ids), position=rng.randint(1, 10_000)
            ),
            20,
        )
        result["move_10000"] = summary(move_values)
        log(f"  move at 10,000: median {summary(move_values)['median']:.1f} ms")
        result["claims"], result["claim_floor"], result["claims_start"] = {}, {}, {}
        for claimers, per in CLAIMERS:
            close_old_connections()
            values, floor, start = claims(env, claimers, per)
            requeue_running()
            vacuum()
            result["claims"][claimers] = summary(values)
            result["claim_floor"][claimers] = summary(floor)
            result["claims_start"][claimers] = summary(start)
            log(
                f"  claim with {claimers} claimers: median {summary(values)['median']:.1f} ms"
                f" p99 {summary(values)['p99']:.1f} ms; the floor: median"
                f" {summary(floor)['median']:.1f} ms p99 {summary(floor)['p99']:.1f} ms;"
                f" the first lap's: median {summary(start)['median']:.1f} ms"
                f" max {summary(start)['max']:.1f} ms"
            )
    return result


if __name__ == "__main__":
    if sys.argv[1] == "claimer":
        claimer(int(sys.argv[2]))
