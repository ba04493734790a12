"""What realtime reads from queue_app: the snapshot, the current seq, events to replay, and
the redaction rules. The only realtime module that imports queue_app
(tests/test_import_graph.py), so the seam between domain and transport is this page.

The functions that touch the database are synchronous; callers in the event loop wrap
them in database_sync_to_async.
"""

from __future__ import annotations

from typing import Any

from queue_app.events import (
    STAFF_HEAD_PLACES,
    SnapshotEncoder,
    Viewer,
    audience_key,
    event_for_viewer,
    owners_in,
    redacted_audience_key,
    snapshot_for_viewer,
)
from queue_app.selectors import (
    current_seq,
    events_after,
    own_entries_past_head,
    own_entries_past_head_of,
    queue_snapshot,
    waiting_counts,
)

__all__ = [
    "STAFF_HEAD_PLACES",
    "SnapshotEncoder",
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
