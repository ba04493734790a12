"""What the tests of the changes PostgreSQL runs whole (queue_claim_next, queue_enqueue)
compare: every row such a change writes or moves, as the database holds it, and the
messages published on commit. Each test runs the Python definition and the function on
the same line and holds the two to the same outcome."""

from __future__ import annotations

import json

from django.db import connection

from queue_app import sql
from queue_app.events import event_message
from queue_app.models import (
    Activity,
    QueueEntry,
    QueueEvent,
    QueueOwner,
    QueueState,
    TransferAttempt,
)


def stored(seq_after: int) -> dict:
    """Every row a change writes or moves (JSON as its text; events after `seq_after`)."""

    def rows(query: str, params: list | None = None) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(query, params or [])
            return cursor.fetchall()

    entry = sql.table(QueueEntry)
    return {
        "entries": rows(f"SELECT * FROM {entry} ORDER BY id"),
        "attempts": rows(
            f"SELECT entry_id, number, worker, started_at, finished_at, outcome, error_kind,"
            f" error, bytes_moved, retry_after_seconds FROM {sql.table(TransferAttempt)}"
            " ORDER BY entry_id, number"
        ),
        "owners": rows(f"SELECT * FROM {sql.table(QueueOwner)} ORDER BY owner_id"),
        # The owners' history (services.activity): ids aside, which a rolled-back insert
        # would have taken from the sequence.
        "history": rows(
            f"SELECT (to_jsonb(a) - 'id')::text FROM {sql.table(Activity)} a ORDER BY seq, entry_id"
        ),
        "state": rows(f"SELECT * FROM {sql.table(QueueState)}"),
        "events": rows(
            "SELECT seq, update_type, entry_id, affected_user_id, global_position,"
            ' queue_length, paused, payload::text, "window"::text, created_at'
            f" FROM {sql.table(QueueEvent)} WHERE seq > %s ORDER BY seq",
            [seq_after],
        ),
    }


def outcome(entry: QueueEntry | None, published: list[QueueEvent], seq_after: int) -> dict:
    """A change's outcome: the entry it returned (its columns), the rows, the messages
    published (emptied for the next change)."""
    messages = [json.dumps(event_message(event), sort_keys=True) for event in published]
    published.clear()
    return {
        "entry": None
        if entry is None
        else {f.attname: getattr(entry, f.attname) for f in QueueEntry._meta.concrete_fields},
        "rows": stored(seq_after),
        "messages": messages,
    }
