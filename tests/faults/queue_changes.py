"""Queue changes made through the services in a process of their own, on the database at
DATABASE_URL (a private PostgreSQL that tests/faults/test_asynchronous_commit.py crashes).

    python -m tests.faults.queue_changes PHASE

prints one line of JSON: what it did. Phases:
- `before`: a user, 12 meetings; 4 enqueued and 1 claimed, begun and completed, all
  with QUEUE_SYNCHRONOUS_COMMIT=on (durable: the baseline that must survive);
- `tail`: as configured (asynchronous by default): 4 more enqueued, 1 claimed and begun
  (the begin is a synchronous commit, as a worker's is, so all before it is durable),
  then the tail: that one completed, 1 more enqueued, 1 claimed (its task on its way to
  a worker);
- `after`: the service as the worker and the reaper find it after the crash: the worker
  begins the claim it was handed (False if the claim was lost), the reaper requeues
  running entries whose lease ran out, the lost meetings are queued again, and the line
  is worked off; then every check of the log and the counts.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def setup() -> None:
    import django

    django.setup()


def ids(entries: list[Any]) -> list[str]:
    return [str(entry.pk) for entry in entries]


def before() -> dict[str, Any]:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from queue_app.models import Meeting
    from queue_app.services import line, transfers

    settings.QUEUE_SYNCHRONOUS_COMMIT = "on"
    owner = get_user_model().objects.create_user("crash-owner", password="x")
    meetings = [
        Meeting.objects.create(owner=owner, recording_id=9000 + n, title=f"meeting {n}")
        for n in range(12)
    ]
    queued = [line.entry_enqueue(meeting=meeting) for meeting in meetings[:4]]
    claimed = transfers.transfer_claim_next(worker="")
    assert claimed is not None
    assert transfers.transfer_begin(entry_id=claimed.pk, worker="w-before")
    assert transfers.transfer_complete(entry_id=claimed.pk, worker="w-before") is not None
    return {"queued": ids(queued), "completed": str(claimed.pk)}


def tail() -> dict[str, Any]:
    from django.conf import settings

    from queue_app.models import Meeting, QueueState
    from queue_app.services import line, transfers

    assert settings.QUEUE_SYNCHRONOUS_COMMIT in ("off", "on")  # the default, or the test's
    meetings = list(Meeting.objects.order_by("recording_id")[4:8])
    queued = [line.entry_enqueue(meeting=meeting) for meeting in meetings]
    begun = transfers.transfer_claim_next(worker="")
    assert begun is not None
    # A synchronous commit (no queue lock): it flushes the WAL before it, the claim too.
    assert transfers.transfer_begin(entry_id=begun.pk, worker="w-tail")
    durable_seq = QueueState.objects.get(pk=1).last_seq
    # The tail: asynchronous commits only.
    assert transfers.transfer_complete(entry_id=begun.pk, worker="w-tail") is not None
    late = line.entry_enqueue(meeting=Meeting.objects.order_by("recording_id")[8])
    handed = transfers.transfer_claim_next(worker="")  # its task is on its way to a worker
    assert handed is not None
    return {
        "queued": ids([*queued, late]),
        "completed": str(begun.pk),
        "handed": str(handed.pk),
        "durable_seq": durable_seq,
        "last_seq": QueueState.objects.get(pk=1).last_seq,
    }


def after(tail_result: dict[str, Any]) -> dict[str, Any]:
    from django.conf import settings
    from django.db import transaction

    from queue_app.models import EntryStatus, Meeting, QueueEntry, QueueEvent, QueueOwner
    from queue_app.services import line, ordering, transfers
    from queue_app.services.changes import lock_queue

    out: dict[str, Any] = {}
    out["surviving_seq"] = lock_queue_seq = _state().last_seq
    # The worker that was handed the last claim begins it now.
    handed = tail_result["handed"]
    out["handed_begun"] = transfers.transfer_begin(entry_id=handed, worker="w-after")
    out["handed_status"] = (
        QueueEntry.objects.filter(pk=handed).values_list("status", flat=True).first()
    )
    if out["handed_begun"]:
        transfers.transfer_complete(entry_id=handed, worker="w-after")
    # The reaper, once the lease of a transfer whose completion was lost has run out.
    time.sleep(settings.QUEUE_LEASE_SECONDS + 0.5)
    out["reaped"] = len(transfers.transfers_requeue_expired())
    # Meetings whose enqueue was lost are queued again; the others are refused.
    out["queued_again"] = 0
    for meeting in Meeting.objects.order_by("recording_id")[:9]:
        if not QueueEntry.objects.filter(meeting=meeting).exists():
            line.entry_enqueue(meeting=meeting)
            out["queued_again"] += 1
    # Work the line off: claim, begin, complete until nothing is left.
    while (entry := transfers.transfer_claim_next(worker="")) is not None:
        assert transfers.transfer_begin(entry_id=entry.pk, worker="w-after")
        transfers.transfer_complete(entry_id=entry.pk, worker="w-after")
    entries = list(QueueEntry.objects.values("id", "meeting_id", "status", "attempts"))
    out["statuses"] = sorted(entry["status"] for entry in entries)
    out["entries_per_meeting"] = max(
        sum(1 for e in entries if e["meeting_id"] == m) for m in {e["meeting_id"] for e in entries}
    )
    seqs = list(QueueEvent.objects.order_by("seq").values_list("seq", flat=True))
    out["seqs_contiguous"] = seqs == list(range(1, len(seqs) + 1))
    state = _state()
    out["last_seq_is_the_logs"] = state.last_seq == (seqs[-1] if seqs else 0)
    out["lock_queue_seq"] = lock_queue_seq
    completed_events = list(
        QueueEvent.objects.filter(update_type="task_completed").values_list("entry_id", flat=True)
    )
    out["completed_once"] = len(completed_events) == len(set(completed_events))
    # The counts the state keeps, against the rows (ordering.recount's own reading).
    kept = (state.waiting, state.running, state.retrying)
    owners = dict(QueueOwner.objects.values_list("owner_id", "waiting"))
    with transaction.atomic():
        ordering.recount(lock_queue())
    state = _state()
    out["counts_kept"] = kept == (state.waiting, state.running, state.retrying)
    out["owners_kept"] = owners == dict(QueueOwner.objects.values_list("owner_id", "waiting"))
    out["active"] = QueueEntry.objects.filter(
        status__in=[EntryStatus.QUEUED, EntryStatus.RUNNING, EntryStatus.RETRYING]
    ).count()
    return out


def _state():
    from queue_app.models import QueueState

    return QueueState.objects.get(pk=1)


if __name__ == "__main__":
    setup()
    phase = sys.argv[1]
    if phase == "before":
        result = before()
    elif phase == "tail":
        result = tail()
    else:
        result = after(json.loads(sys.argv[2]))
    print(json.dumps(result), flush=True)
