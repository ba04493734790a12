"""What a client does with /queue_updates: start from a snapshot, apply events in seq order.

A pure-Python reference for the browser code and for the tests, which check that a
snapshot plus the events after it equals a fresh snapshot, for every kind of viewer.
"""

from __future__ import annotations

import copy
from typing import Any

from queue_app.events import UPDATE_TYPES, shifted
from queue_app.models import FINISHED_STATUSES

# Fields that change without an event (progress ticks, a worker's heartbeat, the clock):
# a client learns them from ProgressUpdate messages and a fresh snapshot, never from seq.
LIVE_FIELDS = frozenset({"eta_seconds", "progress", "stage", "worker"})

# An entry in one of these states has left the active list; events still carry it once
# (completed, failed, cancelled) so the client knows to drop it.
FINISHED = frozenset(FINISHED_STATUSES)


class GapError(Exception):
    """The event is not the one after the state's seq: resync from a fresh snapshot."""


def state_from_snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The client's state from a QueueSnapshot message (which is left untouched)."""
    state = {
        "seq": snapshot["seq"],
        "paused": bool(snapshot.get("paused", False)),
        "queue_length": snapshot["queue_length"],
        "waiting": snapshot["waiting"],
        "head_places": snapshot["head_places"],
        "queue": copy.deepcopy(snapshot["queue"]),
    }
    # Trusted as sent: the snapshot's positions are the server's, not renumbered here.
    return state


def apply_event(state: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """The state after one message; `state` is not changed.

    A QueueUpdate must carry seq + 1 (anything else raises GapError: the client resumes
    or takes a fresh snapshot). A ProgressUpdate has no seq and only updates live fields.

    The state is a window (protocol version 2): the viewer's own entries, the entries off
    the line and the first `head_places` places. An event carries the changed entries in
    that window (before or after the change), the entries that entered it, and `moved`:
    the places removed (positions before) and inserted (positions after). Every entry the
    event does not carry gets its new position from `moved` (events.shifted), so the
    viewer's own entries stay exact without the rest of the line; then whatever is no
    longer in the window is dropped.
    """
    if message.get("type") == "ProgressUpdate":
        return _apply_progress(state, message)
    if message.get("type") != "QueueUpdate":
        raise ValueError(f"not a queue message: {message.get('type')!r}")
    if message["update_type"] not in UPDATE_TYPES:
        raise ValueError(f"unknown update_type {message['update_type']!r}")
    if message["seq"] != state["seq"] + 1:
        raise GapError(f"expected seq {state['seq'] + 1}, got {message['seq']}")

    carried = [*message["queue"], *message["entered"]]
    ids = {entry["id"] for entry in carried}
    kept = []
    for entry in state["queue"]:
        if entry["id"] in ids:
            continue
        entry = dict(entry)
        if entry.get("position") is not None:
            entry["position"] = shifted(entry["position"], message["moved"])
        kept.append(entry)
    # An entry's `outcome` tells of this change (the history), not of the entry's state.
    arriving = [
        {k: copy.deepcopy(v) for k, v in e.items() if k != "outcome"}
        for e in carried
        if e["status"] not in FINISHED
    ]
    places = state["head_places"]
    queue = [entry for entry in (*kept, *arriving) if _in_window(entry, places)]
    queue.sort(key=lambda e: (e.get("position") is not None, e.get("position") or 0))
    return {
        "seq": message["seq"],
        "paused": bool(message["paused"]),
        "queue_length": message["queue_length"],
        "waiting": message["waiting"],
        "head_places": places,
        "queue": queue,
    }


def _in_window(entry: dict[str, Any], places: int) -> bool:
    """Mine, off the line (running, waiting to retry), or in the first `places` places."""
    position = entry.get("position")
    return bool(entry.get("mine")) or position is None or position <= places


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """The part of a state (or snapshot) that events decide, in a canonical order.

    Live fields are dropped. Entries without a position (running, waiting to retry) are
    sorted by id: their order among themselves is not part of the protocol (a viewer who
    sees them redacted could not know it), while the line's order is.
    """
    queue = [
        {key: value for key, value in entry.items() if key not in LIVE_FIELDS}
        for entry in state["queue"]
    ]
    queue.sort(key=lambda e: (e.get("position") is not None, e.get("position") or 0, str(e["id"])))
    return {
        "seq": state["seq"],
        "paused": bool(state.get("paused", False)),
        "queue_length": state["queue_length"],
        "waiting": state["waiting"],
        "head_places": state["head_places"],
        "queue": queue,
    }


def _apply_progress(state: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    queue = []
    for entry in state["queue"]:
        if entry["id"] == message["entry_id"]:
            entry = {
                **entry,
                "stage": message["stage"],
                "progress": message["progress"],
                "worker": message.get("worker", entry.get("worker", "")),
            }
        queue.append(entry)
    return {**state, "queue": queue}
