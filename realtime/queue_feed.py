"""What realtime reads from queue_app: the snapshot, the current seq, events to replay, and
the redaction rules. The only realtime module that imports queue_app
(tests/test_import_graph.py), so the seam between domain and transport is this page.

The functions that touch the database are synchronous; callers in the event loop wrap
them in database_sync_to_async.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from queue_app.events import (
    ENTRY_COLUMNS,
    STAFF_HEAD_PLACES,
    Viewer,
    audience_key,
    entry_payload,
    event_for_viewer,
    owners_in,
    redacted_audience_key,
    snapshot_for_viewer,
    username_column,
)
from queue_app.models import QueueEntry, QueueOwner
from queue_app.selectors import (
    average_transfer_seconds,
    current_seq,
    eta_seconds,
    events_after,
    own_entries_past_head,
    positions_of_keys,
    queue_snapshot,
    queued_entries,
)

__all__ = [
    "STAFF_HEAD_PLACES",
    "Viewer",
    "audience_key",
    "current_seq",
    "event_for_viewer",
    "events_between",
    "events_to_replay",
    "own_entries_past_head",
    "own_entries_past_head_of",
    "owners_in",
    "queue_snapshot",
    "redacted_audience_key",
    "snapshot_for_viewer",
    "waiting_counts",
]


def events_between(after: int, before: int | None) -> list[dict[str, Any]]:
    """Full logged events with after < seq < before (no upper bound when None)."""
    return events_after(seq=after, before=before, limit=10_000)


def events_to_replay(last_seq: int, limit: int) -> tuple[int, list[dict[str, Any]] | None]:
    """The log's newest seq, and the events after `last_seq`; None instead of the events
    when the log no longer holds them all, or more than `limit` (then the client gets a
    fresh snapshot instead: cheaper to send and to apply)."""
    newest = current_seq()
    if last_seq == newest:
        return newest, []
    if 0 < newest - last_seq <= limit:
        events = events_after(seq=last_seq, limit=limit)
        # Not pruned, and all logged with protocol version 2's windows.
        if events and events[0]["seq"] == last_seq + 1 and not any(e["legacy"] for e in events):
            return newest, events
    return newest, None


def own_entries_past_head_of(owner_ids: list[int], seq: int) -> dict[int, list | None]:
    """own_entries_past_head() for many owners at once: each owner's queued entries past
    the widest window's head as of event `seq` (full, with positions and ETAs; [] for
    most), or None for all when the queue is no longer at `seq`. For a burst of connecting
    sockets: a fixed handful of queries for all of them instead of several each.

    No lock, as own_entries_past_head: the log's seq is read before and after, and every
    change that moves an entry appends an event in its transaction."""
    if current_seq() != seq:
        return dict.fromkeys(owner_ids)
    head_end = (
        queued_entries()
        .values_list("order_key", flat=True)[STAFF_HEAD_PLACES - 1 : STAFF_HEAD_PLACES]
        .first()
    )
    behind = []
    if head_end is not None:  # else the whole line is in the head
        behind = list(
            queued_entries()
            .filter(owner_id__in=owner_ids, order_key__gt=head_end)
            .values_list("id", "order_key")
        )
    result: dict[int, list | None] = {owner: [] for owner in owner_ids}
    if behind:
        # One count ahead of the lowest key and the keys up to the highest, for everyone.
        places = positions_of_keys([key for _, key in behind])
        position = {pk: places[key] for pk, key in behind}
        rows = QueueEntry.objects.filter(pk__in=list(position)).values(
            *ENTRY_COLUMNS, username_column()
        )
        mean = average_transfer_seconds()
        for row in rows:
            entry = entry_payload(row, position[row["id"]])
            entry["eta_seconds"] = eta_seconds(
                position=position[row["id"]],
                status=row["status"],
                started_at=row["started_at"],
                mean=mean,
                concurrency=settings.QUEUE_CONCURRENCY,
            )
            result[row["owner_id"]].append(entry)
        for entries in result.values():
            entries.sort(key=lambda entry: entry["position"])
    if current_seq() != seq:
        return dict.fromkeys(owner_ids)
    return result


def waiting_counts(seq: int) -> dict[int, int] | None:
    """How many entries each user has waiting, as of event `seq` (the counts fair share
    keeps, QueueOwner.waiting, one row per user with entries); None if the queue is no
    longer at `seq`. With a snapshot's head it tells whose entries go further back."""
    if current_seq() != seq:
        return None
    counts = dict(QueueOwner.objects.filter(waiting__gt=0).values_list("owner_id", "waiting"))
    if current_seq() != seq:
        return None
    return counts
