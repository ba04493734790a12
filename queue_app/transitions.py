"""Every status change of a queue entry, declared once: the states it may start from, the
state it ends in, the event it emits and the fields it sets. Services apply these rows;
none of them writes a status or resets a field by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from queue_app import sql
from queue_app.errors import InvalidState
from queue_app.models import EntryStatus, QueueEntry, UpdateType

# Stands for the time of the change in `sets`.
NOW = object()

_LEFT_THE_LINE = {"finished_at": NOW, "lease_expires_at": None, "next_attempt_at": None}


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    target: str
    update_type: str
    # Fields the transition always sets (NOW: the time of the change). Values the caller
    # decides (a worker, an order key, an error) are passed to apply().
    sets: Mapping[str, Any] = field(default_factory=dict)
    # Why a call from another state is refused, completed by the state it found.
    refusal: str = ""

    def check(self, entry: QueueEntry) -> None:
        """Raise InvalidState unless `entry` may take this transition."""
        if entry.status not in self.sources:
            raise InvalidState(f"{self.refusal}; this one is {entry.status}.")

    def values(self, now: datetime, **given: Any) -> dict[str, Any]:
        """Every field this transition writes, the status included."""
        values = {"status": self.target}
        for name, value in {**self.sets, **given}.items():
            values[name] = now if value is NOW else value
        values["updated_at"] = now
        return values

    def apply(self, entry: QueueEntry, now: datetime, **given: Any) -> None:
        """Check, then change and save `entry` (only the fields this transition writes)."""
        self.check(entry)
        values = self.values(now, **given)
        for name, value in values.items():
            setattr(entry, name, value)
        # As entry.save(update_fields=...), in plain SQL held back in a batched() change.
        sql.update(entry, list(values))


ACTIVE = frozenset({EntryStatus.QUEUED, EntryStatus.RUNNING, EntryStatus.RETRYING})
RUNNING = frozenset({EntryStatus.RUNNING})

# A new entry (no row before it) joins the line.
ENQUEUE = Transition(frozenset(), EntryStatus.QUEUED, UpdateType.MEETING_ADDED)
CANCEL = Transition(
    ACTIVE,
    EntryStatus.CANCELLED,
    UpdateType.MEETING_REMOVED,
    sets=_LEFT_THE_LINE,
    refusal="Only a queued or running entry can be cancelled",
)
CLEAR = Transition(
    frozenset({EntryStatus.QUEUED, EntryStatus.RETRYING}),
    EntryStatus.CANCELLED,
    UpdateType.QUEUE_CLEARED,
    sets=_LEFT_THE_LINE,
    refusal="Only a waiting entry is cleared",
)
MOVE = Transition(
    frozenset({EntryStatus.QUEUED}),
    EntryStatus.QUEUED,
    UpdateType.POSITION_UPDATED,
    refusal="Only a queued entry can be moved",
)
RETRY = Transition(
    frozenset({EntryStatus.FAILED, EntryStatus.CANCELLED}),
    EntryStatus.QUEUED,
    UpdateType.TASK_RETRIED,
    sets={
        "attempts": 0,
        "last_error": "",
        "stage": "",
        "progress": 0.0,
        "worker": "",
        "started_at": None,
        "finished_at": None,
        "next_attempt_at": None,
        "lease_expires_at": None,
    },
    refusal="Only a failed or cancelled entry can be retried",
)
CLAIM = Transition(
    frozenset({EntryStatus.QUEUED, EntryStatus.RETRYING}),
    EntryStatus.RUNNING,
    UpdateType.TASK_STARTED,
    sets={"started_at": NOW, "next_attempt_at": None, "stage": "", "progress": 0.0},
    refusal="Only a waiting entry can be claimed",
)
COMPLETE = Transition(
    RUNNING,
    EntryStatus.COMPLETED,
    UpdateType.TASK_COMPLETED,
    sets={"finished_at": NOW, "lease_expires_at": None, "stage": "done", "progress": 1.0},
    refusal="Only a running entry can complete",
)
FAIL = Transition(
    RUNNING,
    EntryStatus.FAILED,
    UpdateType.TASK_FAILED,
    sets=_LEFT_THE_LINE,
    refusal="Only a running entry can fail",
)
# A transient failure: off the line until next_attempt_at, then before it.
WAIT_TO_RETRY = Transition(
    RUNNING,
    EntryStatus.RETRYING,
    UpdateType.TASK_RETRIED,
    sets={"lease_expires_at": None, "worker": ""},
    refusal="Only a running entry can wait to retry",
)
# A running entry whose worker stopped renewing its lease goes back to the front.
REQUEUE_EXPIRED = Transition(
    RUNNING,
    EntryStatus.QUEUED,
    UpdateType.TASK_RETRIED,
    sets={"worker": "", "lease_expires_at": None, "stage": "", "progress": 0.0},
    refusal="Only a running entry can be requeued",
)

TRANSITIONS: dict[str, Transition] = {
    "enqueue": ENQUEUE,
    "cancel": CANCEL,
    "clear": CLEAR,
    "move": MOVE,
    "retry": RETRY,
    "claim": CLAIM,
    "complete": COMPLETE,
    "fail": FAIL,
    "wait_to_retry": WAIT_TO_RETRY,
    "requeue_expired": REQUEUE_EXPIRED,
}
