"""The queue's wire format: entries, events and snapshots as clients see them, and who
sees what.

One definition serves every reader. `entry_payload` builds an entry from one row shape
(`ENTRY_COLUMNS`) for events, snapshots and the HTTP API alike; the JSON Schema below
(`SCHEMAS`) is what docs/protocol.md prints and what the tests validate every emitted
message against; the update types are the model's choices. Redaction happens here too:
full entries for their owner and staff, anonymous places (`PUBLIC_ENTRY_FIELDS`) for
everyone else. realtime only moves the results.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import get_user_model

from queue_app.models import (
    FINISHED_STATUSES,
    ActivityBy,
    ActivityKind,
    EntryStatus,
    QueueEntry,
    QueueEvent,
    UpdateType,
)

PROTOCOL_VERSION = 2
# A viewer's window on the line (protocol version 2): the first places of the line, the
# entries off it (running, waiting to retry) and the viewer's own entries. Read at call
# time, so tests can make them small.
HEAD_PLACES = 20
STAFF_HEAD_PLACES = 200
OFF_LINE_STATUSES = (EntryStatus.RUNNING, EntryStatus.RETRYING)
UPDATE_TYPES: tuple[str, ...] = tuple(UpdateType.values)
# Fields of an entry that anyone may see; everything else is for its owner and staff.
PUBLIC_ENTRY_FIELDS = ("id", "position", "status")
# The columns an entry's payload is made of, as QuerySet.values() names them. Snapshots
# read entries as values() rows: at 70 entries ~3 ms instead of ~10 ms with three model
# instances a row, and every socket reads one on connect.
ENTRY_COLUMNS = (
    "id",
    "status",
    "meeting_id",
    "meeting__recording_id",
    "meeting__title",
    "meeting__meeting_title",
    "owner_id",
    "attempts",
    "max_attempts",
    "last_error",
    "stage",
    "progress",
    "result_url",
    "worker",
    "created_at",
    "started_at",
    "finished_at",
    "next_attempt_at",
)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: decides which entries arrive in full."""

    user_id: int | None
    is_staff: bool = False

    @classmethod
    def of(cls, user: Any) -> Viewer:
        if user is None or not user.is_authenticated:
            return cls(user_id=None, is_staff=False)
        return cls(user_id=user.pk, is_staff=bool(user.is_staff))

    def sees_in_full(self, owner_id: str | int | None) -> bool:
        if self.is_staff:
            return True
        return self.owns(owner_id)

    def owns(self, owner_id: str | int | None) -> bool:
        return self.user_id is not None and str(self.user_id) == str(owner_id)

    @property
    def head_places(self) -> int:
        """How many places of the line's head this viewer's window holds."""
        return STAFF_HEAD_PLACES if self.is_staff else HEAD_PLACES

    def in_window(self, entry: dict[str, Any]) -> bool:
        """Whether a full entry (as of now) is in this viewer's window: its own active
        entries, every entry off the line, and the first `head_places` places."""
        if self.owns(entry.get("owner_id")):
            return entry["status"] not in FINISHED_STATUSES
        return _in_window(entry["status"], entry.get("position"), self.head_places)


def _in_window(status: str | None, position: int | None, places: int) -> bool:
    if status in OFF_LINE_STATUSES:
        return True
    return status == EntryStatus.QUEUED and position is not None and position <= places


def isoformat(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- entries ---------------------------------------------------------------------------------


@functools.cache
def username_column() -> str:
    """The values() column holding an entry owner's username (cached: entry_payload asks
    once per entry, and a snapshot of 10,000 entries would pay ~2 us each)."""
    return "owner__" + get_user_model().USERNAME_FIELD


def entry_row(entry: QueueEntry) -> dict[str, Any]:
    """A loaded entry (with meeting and owner) as the values() row entry_payload reads."""
    row = {}
    for column in (*ENTRY_COLUMNS, username_column()):
        value: Any = entry
        for part in column.split("__"):
            value = getattr(value, part)
        row[column] = value
    return row


def entry_payload(row: dict[str, Any], position: int | None) -> dict[str, Any]:
    """The full description of an entry, as its owner and staff see it, from a row with
    ENTRY_COLUMNS and the owner's username (QuerySet.values() or entry_row())."""
    title = row["meeting__title"] or row["meeting__meeting_title"]
    return {
        "id": str(row["id"]),
        "position": position,
        "status": row["status"],
        "meeting_id": row["meeting_id"],
        "recording_id": row["meeting__recording_id"],
        "title": title or f"Recording {row['meeting__recording_id']}",
        "owner_id": str(row["owner_id"]),
        "owner": str(row[username_column()]),
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "last_error": row["last_error"],
        "stage": row["stage"],
        "progress": row["progress"],
        "result_url": row["result_url"],
        "worker": row["worker"],
        "created_at": isoformat(row["created_at"]),
        "started_at": isoformat(row["started_at"]),
        "finished_at": isoformat(row["finished_at"]),
        "next_attempt_at": isoformat(row["next_attempt_at"]),
    }


# --- messages --------------------------------------------------------------------------------


NO_MOVES: dict[str, list[list[int]]] = {"removed": [], "inserted": []}


def position_runs(positions: list[int]) -> list[list[int]]:
    """Sorted positions as runs: [first, count] for consecutive places, [first, count, step]
    for places `step` apart. 2,000 places joined at 31-2,030 are [31, 2000]; a bulk that
    fair share spreads over 500 rounds of 200 others, [201, 500, 201] and one run after."""
    runs: list[list[int]] = []
    for position in sorted(positions):
        if runs:
            run = runs[-1]
            step = run[2] if len(run) == 3 else 1
            last = run[0] + (run[1] - 1) * step
            if run[1] == 1 and position > last:
                # A run of one takes the step to the next place; a later one must keep it.
                runs[-1] = [run[0], 2] if position == last + 1 else [run[0], 2, position - last]
                continue
            if position == last + step:
                run[1] += 1
                continue
        runs.append([position, 1])
    return runs


def shifted(position: int, moved: dict[str, list[list[int]]]) -> int:
    """Where an entry that an event did not carry stands after it, from where it stood
    before: minus the places removed ahead of it (positions before the change), then plus
    each place inserted at or ahead of where it now stands (positions after), run by run
    in order."""
    removed = 0
    for first, count, *step in moved.get("removed", ()):
        if first < position:
            removed += min(count, (position - 1 - first) // (step[0] if step else 1) + 1)
    position -= removed
    for first, count, *step in moved.get("inserted", ()):
        if first > position:
            break
        # The j-th place of the run (first + j * step) is ahead iff it is at most where
        # the entry stands once the j places before it are in: first + j*step <= position + j.
        gap = (step[0] if step else 1) - 1
        position += count if gap == 0 else min(count, (position - first) // gap + 1)
    return position


def event_message(event: QueueEvent) -> dict[str, Any]:
    """The full (unredacted) QueueUpdate for a stored event. Besides what every viewer may
    get, it holds `before` ([status, position] of each entry in `queue` before the change),
    which decides who hears of an entry that left their window; event_for_viewer drops it."""
    queue = event.payload
    window = event.window or {}  # empty for events logged before protocol version 2
    return {
        "type": "QueueUpdate",
        "version": PROTOCOL_VERSION,
        "update_type": event.update_type,
        "seq": event.seq,
        "queue": queue,
        "before": window.get("before") or [[None, None]] * len(queue),
        "entered": window.get("entered", []),
        "moved": window.get("moved", NO_MOVES),
        "affected_user_id": str(event.affected_user_id) if event.affected_user_id else None,
        "global_position": event.global_position,
        "queue_length": event.queue_length,
        "waiting": window.get("waiting", 0),
        "paused": event.paused,
        "timestamp": isoformat(event.created_at),
        # Logged before protocol version 2: resumes from before it get a fresh snapshot.
        "legacy": not window,
    }


def snapshot_message(
    *,
    seq: int,
    paused: bool,
    entries: list[dict[str, Any]],
    now: datetime,
    queue_length: int,
    waiting: int,
) -> dict[str, Any]:
    """The full (unredacted) QueueSnapshot, as of event `seq`: the entries off the line, the
    first STAFF_HEAD_PLACES places, and any owner's entries read with them (selectors);
    snapshot_for_viewer() cuts it to one viewer's window."""
    return {
        "type": "QueueSnapshot",
        "version": PROTOCOL_VERSION,
        "seq": seq,
        "paused": paused,
        "queue_length": queue_length,
        "waiting": waiting,
        "head_places": STAFF_HEAD_PLACES,
        "queue": entries,
        "timestamp": isoformat(now),
    }


def progress_message(
    *, entry_id: str, owner_id: int | str, stage: str, progress: float, worker: str, now: datetime
) -> dict[str, Any]:
    """A ProgressUpdate: ephemeral, no seq; for the entry's owner and staff only."""
    return {
        "type": "ProgressUpdate",
        "entry_id": str(entry_id),
        "owner_id": str(owner_id),
        "stage": stage,
        "progress": round(min(max(float(progress), 0.0), 1.0), 4),
        "worker": worker,
        "timestamp": isoformat(now),
    }


# --- redaction -------------------------------------------------------------------------------


def entry_for_viewer(entry: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    if viewer.sees_in_full(entry.get("owner_id")):
        return {
            **entry,
            "mine": viewer.user_id is not None and str(viewer.user_id) == entry.get("owner_id"),
        }
    redacted = {field: entry.get(field) for field in PUBLIC_ENTRY_FIELDS}
    redacted["mine"] = False
    return redacted


def _sees_change(entry: dict[str, Any], before: list[Any], viewer: Viewer) -> bool:
    """Whether `viewer` hears of a changed entry: theirs, or in their window before or
    after the change (so a client drops what leaves its window and adds what enters)."""
    if viewer.owns(entry.get("owner_id")) or viewer.in_window(entry):
        return True
    status, position = before
    return _in_window(status, position, viewer.head_places)


def event_for_viewer(message: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """Redact a full QueueUpdate for one viewer: the changed entries in their window (before
    or after) and all of theirs, the entries that entered their window, and which places
    moved. Others never learn whose entry moved. A few hundred bytes plus the viewer's own
    entries, however many others' entries the change touched."""
    affected = message.get("affected_user_id")
    before = message.get("before") or [[None, None]] * len(message["queue"])
    return {
        "type": "QueueUpdate",
        "version": message["version"],
        "update_type": message["update_type"],
        "seq": message["seq"],
        "queue": [
            entry_for_viewer(entry, viewer)
            for entry, was in zip(message["queue"], before, strict=True)
            if _sees_change(entry, was, viewer)
        ],
        "entered": [
            entry_for_viewer(entry, viewer)
            for entry in message["entered"]
            if entry.get("position") is not None and entry["position"] <= viewer.head_places
        ],
        "moved": message["moved"],
        "affected_user_id": affected if affected and viewer.sees_in_full(affected) else None,
        "global_position": message["global_position"],
        "queue_length": message["queue_length"],
        "waiting": message["waiting"],
        "paused": message["paused"],
        "timestamp": message["timestamp"],
    }


def snapshot_for_viewer(snapshot: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """A full QueueSnapshot cut to one viewer's window and redacted (a new dict; the full
    one is unchanged). Its own entries are there if the full snapshot was read with them."""
    return {
        **snapshot,
        "head_places": viewer.head_places,
        "queue": [
            entry_for_viewer(entry, viewer)
            for entry in snapshot["queue"]
            if viewer.in_window(entry)
        ],
    }


class SnapshotEncoder:
    """snapshot_for_viewer() and json.dumps() of one full snapshot for many viewers who are
    not staff, in the same bytes, with what they share done once: the message around the
    entries, and each entry that is in the window of a viewer who does not own it,
    redacted and encoded. A viewer's text then joins those with its own entries, encoded
    in full: for the sockets that connect together (realtime.hub), a pass over the
    shared window's entries each instead of a cut and an encoding of it each."""

    def __init__(self, snapshot: dict[str, Any], *, reset: bool = False) -> None:
        places = HEAD_PLACES
        skeleton = {**snapshot, "head_places": places, "queue": []}
        if reset:
            skeleton["reset"] = True
        text = json.dumps(skeleton)
        # The other values are numbers, booleans and a timestamp: only the queue's key
        # can read so.
        cut = text.index('"queue": []') + len('"queue": [')
        self.prefix, self.suffix = text[:cut], text[cut:]
        anonymous = Viewer(user_id=None)
        self.entries = [
            (
                entry,
                str(entry.get("owner_id")),
                json.dumps(entry_for_viewer(entry, anonymous))
                if _in_window(entry["status"], entry.get("position"), places)
                else None,
            )
            for entry in snapshot["queue"]
        ]

    def text(self, viewer: Viewer, own: list[dict[str, Any]] | None = None) -> str:
        """json.dumps(snapshot_for_viewer(<the snapshot, `own` entries added>, viewer)), with
        "reset" as the encoder was made; `viewer` is not staff."""
        assert not viewer.is_staff, "staff see every entry in full: snapshot_for_viewer"
        user = str(viewer.user_id) if viewer.user_id is not None else None
        parts = []
        for entry, owner, redacted in self.entries:
            if owner == user:
                if entry["status"] not in FINISHED_STATUSES:
                    parts.append(json.dumps(entry_for_viewer(entry, viewer)))
            elif redacted is not None:
                parts.append(redacted)
        for entry in own or ():
            if viewer.in_window(entry):
                parts.append(json.dumps(entry_for_viewer(entry, viewer)))
        return self.prefix + ", ".join(parts) + self.suffix


def audience_key(message: dict[str, Any], viewer: Viewer) -> tuple:
    """What distinguishes one viewer's copy of an event from another's: viewers with the
    same key get the same bytes, so a fan-out encodes once per key, not once per socket.
    The window's size comes with being staff; the rest is whose entries the viewer owns."""
    user = str(viewer.user_id) if viewer.user_id is not None else None
    entries = tuple(
        (viewer.sees_in_full(entry.get("owner_id")), user == entry.get("owner_id"))
        for entry in (*message["queue"], *message["entered"])
    )
    affected = message.get("affected_user_id")
    return viewer.is_staff, entries, bool(affected and viewer.sees_in_full(affected))


def redacted_audience_key(message: dict[str, Any]) -> tuple:
    """audience_key() of a viewer who owns none of the event's entries and is not staff."""
    return False, tuple((False, False) for _ in (*message["queue"], *message["entered"])), False


def owners_in(message: dict[str, Any]) -> set[str]:
    """The users (ids as strings) who, besides staff, may get more than the anonymous copy
    of an event: the owners of the entries it carries and the user it affects. A set, so a
    fan-out tells each viewer apart with one lookup."""
    owners = {entry.get("owner_id") for entry in (*message["queue"], *message["entered"])}
    owners.add(message.get("affected_user_id"))
    owners.discard(None)
    return owners


# --- the schema ------------------------------------------------------------------------------
# JSON Schema (draft 2020-12) of every server-to-client message. docs/protocol.md prints it
# (tests/unit/test_protocol_schema.py keeps the two equal) and the state-machine test
# validates every event and snapshot it sees against the copy in the docs.

_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_POSITION = {"type": ["integer", "null"], "minimum": 1}
_STATUS = {"enum": list(EntryStatus.values)}

_FULL_ENTRY_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "format": "uuid"},
    "position": _POSITION,
    "status": _STATUS,
    "mine": {"type": "boolean"},
    "meeting_id": {"type": "integer"},
    "recording_id": {"type": "integer"},
    "title": {"type": "string"},
    "owner_id": {"type": "string"},
    "owner": {"type": "string"},
    "attempts": {"type": "integer", "minimum": 0},
    "max_attempts": {"type": "integer", "minimum": 0},
    "last_error": {"type": "string"},
    "stage": {"type": "string"},
    "progress": {"type": "number", "minimum": 0, "maximum": 1},
    "result_url": {"type": "string"},
    "worker": {"type": "string"},
    "created_at": _TIME,
    "started_at": _NULLABLE_TIME,
    "finished_at": _NULLABLE_TIME,
    "next_attempt_at": _NULLABLE_TIME,
    # In snapshots and the API only: it changes with time, not with events.
    "eta_seconds": {"type": ["integer", "null"], "minimum": 0},
    # In events only, on the entries the change was an outcome for (GET /api/activity).
    "outcome": {
        "type": "object",
        "additionalProperties": False,
        "required": ["activity_id", "kind", "by", "note"],
        "properties": {
            "activity_id": {"type": "integer"},
            "kind": {"enum": list(ActivityKind.values)},
            "by": {"enum": list(ActivityBy.values)},
            "note": {"type": "string"},
        },
    },
}

ENTRY_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "title": "Entry, in full (its owner and staff)",
            "type": "object",
            "additionalProperties": False,
            "required": [
                name for name in _FULL_ENTRY_PROPERTIES if name not in ("eta_seconds", "outcome")
            ],
            "properties": _FULL_ENTRY_PROPERTIES,
        },
        {
            "title": "Entry, anonymous (everyone else)",
            "type": "object",
            "additionalProperties": False,
            "required": [*PUBLIC_ENTRY_FIELDS, "mine"],
            "properties": {
                **{name: _FULL_ENTRY_PROPERTIES[name] for name in PUBLIC_ENTRY_FIELDS},
                "mine": {"const": False},
            },
        },
    ]
}

# Runs of places: [first, count] or [first, count, step] (step >= 2; position_runs).
_RUNS = {
    "type": "array",
    "items": {
        "type": "array",
        "items": {"type": "integer", "minimum": 1},
        "minItems": 2,
        "maxItems": 3,
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "QueueSnapshot": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "type",
            "version",
            "seq",
            "paused",
            "queue_length",
            "waiting",
            "head_places",
            "queue",
            "timestamp",
        ],
        "properties": {
            "type": {"const": "QueueSnapshot"},
            "version": {"const": PROTOCOL_VERSION},
            "seq": {"type": "integer", "minimum": 0},
            "paused": {"type": "boolean"},
            "queue_length": {"type": "integer", "minimum": 0},
            "waiting": {"type": "integer", "minimum": 0},
            "head_places": {"type": "integer", "minimum": 1},
            "queue": {"type": "array", "items": {"$ref": "#/$defs/Entry"}},
            "timestamp": _TIME,
            "reset": {"const": True},
        },
    },
    "QueueUpdate": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "type",
            "version",
            "update_type",
            "seq",
            "queue",
            "entered",
            "moved",
            "affected_user_id",
            "global_position",
            "queue_length",
            "waiting",
            "paused",
            "timestamp",
        ],
        "properties": {
            "type": {"const": "QueueUpdate"},
            "version": {"const": PROTOCOL_VERSION},
            "update_type": {"enum": list(UPDATE_TYPES)},
            "seq": {"type": "integer", "minimum": 1},
            "queue": {"type": "array", "items": {"$ref": "#/$defs/Entry"}},
            "entered": {"type": "array", "items": {"$ref": "#/$defs/Entry"}},
            "moved": {
                "type": "object",
                "additionalProperties": False,
                "required": ["removed", "inserted"],
                "properties": {"removed": _RUNS, "inserted": _RUNS},
            },
            "affected_user_id": {"type": ["string", "null"]},
            "global_position": _POSITION,
            "queue_length": {"type": "integer", "minimum": 0},
            "waiting": {"type": "integer", "minimum": 0},
            "paused": {"type": "boolean"},
            "timestamp": _TIME,
        },
    },
    "ProgressUpdate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "entry_id", "owner_id", "stage", "progress", "worker", "timestamp"],
        "properties": {
            "type": {"const": "ProgressUpdate"},
            "entry_id": {"type": "string", "format": "uuid"},
            "owner_id": {"type": "string"},
            "stage": {"type": "string"},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "worker": {"type": "string"},
            "timestamp": _TIME,
        },
    },
    "Pong": {
        "type": "object",
        "additionalProperties": False,
        "required": ["type"],
        "properties": {"type": {"const": "pong"}},
    },
    "Error": {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "code", "detail"],
        "properties": {
            "type": {"const": "error"},
            "code": {"type": "string"},
            "detail": {"type": "string"},
        },
    },
}


def protocol_schema() -> dict[str, Any]:
    """Every server message's schema in one document: a message is one of SCHEMAS."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"fathomloom /queue_updates, protocol version {PROTOCOL_VERSION}",
        "oneOf": [{"$ref": f"#/$defs/{name}"} for name in SCHEMAS],
        "$defs": {"Entry": ENTRY_SCHEMA, **SCHEMAS},
    }


def inline_entry_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with each reference to the Entry definition replaced by ENTRY_SCHEMA, for
    documents (OpenAPI) that do not carry this one's $defs."""
    if schema == {"$ref": "#/$defs/Entry"}:
        return ENTRY_SCHEMA
    return {
        key: (
            inline_entry_schema(value)
            if isinstance(value, dict)
            else [inline_entry_schema(v) if isinstance(v, dict) else v for v in value]
            if isinstance(value, list)
            else value
        )
        for key, value in schema.items()
    }
