"""Claims take their turn: queue_claim_next() (migration 0009) waits for a transaction-level
advisory lock before it takes the queue lock, so that claimers contending for the queue
are served in the order they came.

Waiting for a row lock is not first come, first served in PostgreSQL: each change leaves
a new version of the state row, and the waiters race afresh for the tuple lock on it, so
a claim that has waited long can be passed by one that just arrived; that is the tail of
a claim under contention. The lock manager grants an advisory lock in the order it was
asked for. The other changes still take the queue lock alone (they are few, and the row
lock stays what serialises every change). Measured with the bench's claimers, alternated
(bench/notes.md, "Claims in turn"): p99 with 8 claimers 23-29 ms against 32; with 32,
127-169 ms against 220-231; medians unchanged.

The function is 0009's with that one statement added before the lock (and replaced again
by the migrations that change it after).
"""

import importlib

from django.db import migrations

_CLAIM = importlib.import_module("queue_app.migrations.0009_claim_function")

# The advisory lock claimers queue on: any number no other lock of this database uses
# (nothing else here takes advisory locks).
CLAIM_TURN_KEY = 7146554201
_LOCK = "    SELECT * INTO st FROM queue_app_queuestate WHERE id = 1 FOR UPDATE;\n"
_TURN = f"    PERFORM pg_advisory_xact_lock({CLAIM_TURN_KEY});  -- claimers in turn\n"

assert _CLAIM.CLAIM_NEXT.count(_LOCK) == 1
CLAIM_NEXT = _CLAIM.CLAIM_NEXT.replace(_LOCK, _TURN + _LOCK)


def take_turns(apps, schema_editor) -> None:
    _run(schema_editor, CLAIM_NEXT)


def race(apps, schema_editor) -> None:
    _run(schema_editor, _CLAIM.CLAIM_NEXT)


def _run(schema_editor, statement: str) -> None:
    """The statement as it is (no parameters, so "%ROWTYPE" is not a placeholder)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("queue_app", "0011_enqueue_function"),
    ]

    operations = [migrations.RunPython(take_turns, race)]
