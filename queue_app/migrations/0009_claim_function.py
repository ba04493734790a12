"""A claim in one round trip on PostgreSQL: queue_claim_next(), the whole of
services.transfers.transfer_claim_next's change (the queue lock, the head or a due retry,
the CLAIM transition, the counts, the attempt, the event with its payload and window)
run by the server, so the queue lock is held for the server's work alone and never while
a client process waits for a core (bench/notes.md, "A claim in one round trip").

The Python claim stays the definition (SQLite runs it, and so does PostgreSQL when this
function answers `fallback`: no queue state row yet); tests/unit/test_claim_function.py
holds the two to the same rows, event and bytes of payload. A change to the claim, to
entry_payload or to the tables it writes needs a migration that replaces this function.
"""

from django.db import migrations

# Python's isoformat() as events.isoformat gives it: UTC, "Z", microseconds only when not 0.
# STABLE, as to_char() is: a SQL function is inlined into its caller only when it is not
# declared less volatile than its body, and planned at every call when it is not (~0.1 ms).
ISOFORMAT = """
CREATE OR REPLACE FUNCTION queue_isoformat(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN mod(extract(microseconds FROM t)::bigint, 1000000) = 0 THEN ''
                ELSE to_char(t AT TIME ZONE 'UTC', '.US') END
        || 'Z'
$$;
"""

# A float as Python's json writes it: 0.0, not 0 (the same value, the same bytes). STABLE,
# as to_jsonb() is (inlined, as above).
JSON_FLOAT = """
CREATE OR REPLACE FUNCTION queue_json_float(x double precision) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN x = trunc(x) AND abs(x) < 1e16 THEN (x::numeric::text || '.0')::jsonb
                ELSE to_jsonb(x) END
$$;
"""

# events.entry_payload of one entry, at `position`. In plpgsql, which keeps its statements'
# plans for the session: a SQL function that is not inlined is planned at every call
# (~0.5 ms here, three times a claim).
ENTRY_PAYLOAD = """
CREATE OR REPLACE FUNCTION queue_entry_payload(entry_id uuid, place integer) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT jsonb_build_object(
        'id', e.id::text,
        'position', place,
        'status', e.status,
        'meeting_id', e.meeting_id,
        'recording_id', m.recording_id,
        'title', COALESCE(NULLIF(m.title, ''), NULLIF(m.meeting_title, ''),
                          'Recording ' || m.recording_id),
        'owner_id', e.owner_id::text,
        'owner', u.username,
        'attempts', e.attempts,
        'max_attempts', e.max_attempts,
        'last_error', e.last_error,
        'stage', e.stage,
        'progress', queue_json_float(e.progress),
        'result_url', e.result_url,
        'worker', e.worker,
        'created_at', queue_isoformat(e.created_at),
        'started_at', queue_isoformat(e.started_at),
        'finished_at', queue_isoformat(e.finished_at),
        'next_attempt_at', queue_isoformat(e.next_attempt_at)
    )
    FROM queue_app_queueentry e
    JOIN queue_app_meeting m ON m.id = e.meeting_id
    JOIN auth_user u ON u.id = e.owner_id
    WHERE e.id = entry_id);
END
$$;
"""

# Each statement of a plpgsql function takes its own snapshot (READ COMMITTED): every read
# after the lock sees what the transactions before it committed.
CLAIM_NEXT = """
CREATE OR REPLACE FUNCTION queue_claim_next(
    claimer text,
    now timestamptz,
    lease_until timestamptz,
    concurrency bigint,
    commit_level text,
    window_places integer[]
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    st queue_app_queuestate%ROWTYPE;
    e queue_app_queueentry%ROWTYPE;
    was text;
    waiting_before bigint;
    places integer;
    behind uuid;
    entered jsonb := '[]'::jsonb;
    payload jsonb;
    win jsonb;
BEGIN
    IF commit_level IS NOT NULL THEN
        PERFORM set_config('synchronous_commit', commit_level, true);
    END IF;
    SELECT * INTO st FROM queue_app_queuestate WHERE id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        RETURN '{"outcome": "fallback"}'::jsonb;  -- the Python claim makes the row
    END IF;
    IF st.paused OR st.running >= concurrency THEN
        RETURN '{"outcome": "none"}'::jsonb;
    END IF;
    IF st.retrying > 0 THEN  -- a retry whose wait is over goes before the line
        SELECT * INTO e FROM queue_app_queueentry
        WHERE status = 'retrying' AND next_attempt_at <= now
        ORDER BY next_attempt_at, order_key LIMIT 1 FOR UPDATE SKIP LOCKED;
    END IF;
    IF e.id IS NULL AND st.waiting > 0 THEN
        SELECT * INTO e FROM queue_app_queueentry
        WHERE status = 'queued' ORDER BY order_key LIMIT 1 FOR UPDATE SKIP LOCKED;
    END IF;
    IF e.id IS NULL THEN
        RETURN '{"outcome": "none"}'::jsonb;
    END IF;
    was := e.status;
    waiting_before := st.waiting;

    -- transitions.CLAIM
    UPDATE queue_app_queueentry SET
        status = 'running', started_at = now, next_attempt_at = NULL, stage = '',
        progress = 0.0, attempts = e.attempts + 1, worker = claimer,
        lease_expires_at = lease_until, updated_at = now
    WHERE id = e.id
    RETURNING * INTO e;

    -- ordering.taken_from_head, ordering.moved
    IF was = 'queued' THEN
        st.head_round := greatest(st.head_round, e.order_key >> 44);
        st.waiting := st.waiting - 1;
        UPDATE queue_app_queueowner SET waiting = waiting - 1 WHERE owner_id = e.owner_id;
    ELSE
        st.retrying := st.retrying - 1;
    END IF;
    st.running := st.running + 1;

    INSERT INTO queue_app_transferattempt
        (entry_id, number, worker, started_at, finished_at, outcome, error_kind, error,
         bytes_moved, retry_after_seconds)
    VALUES (e.id, e.attempts, claimer, now, NULL, 'running', '', '', NULL, NULL);

    -- changes.record: the state, then the event
    st.last_seq := st.last_seq + 1;
    UPDATE queue_app_queuestate SET
        waiting = st.waiting, running = st.running, retrying = st.retrying,
        head_round = st.head_round, last_seq = st.last_seq, updated_at = now
    WHERE id = 1;

    -- changes._entered: the head's place freed, each window's last place is the entry
    -- that stood behind it
    IF was = 'queued' THEN
        FOREACH places IN ARRAY window_places LOOP
            IF places < waiting_before THEN
                SELECT id INTO behind FROM queue_app_queueentry WHERE status = 'queued'
                ORDER BY order_key LIMIT 1 OFFSET places - 1;
                entered := entered || jsonb_build_array(queue_entry_payload(behind, places));
            END IF;
        END LOOP;
    END IF;

    payload := jsonb_build_array(queue_entry_payload(e.id, NULL));
    win := jsonb_build_object(
        'before', jsonb_build_array(jsonb_build_array(
            was, CASE WHEN was = 'queued' THEN 1 END)),
        'moved', jsonb_build_object(
            'removed', CASE WHEN was = 'queued' THEN '[[1, 1]]'::jsonb ELSE '[]'::jsonb END,
            'inserted', '[]'::jsonb),
        'entered', entered,
        'waiting', st.waiting
    );
    INSERT INTO queue_app_queueevent
        (seq, update_type, entry_id, affected_user_id, global_position, queue_length, paused,
         payload, "window", created_at)
    VALUES (
        st.last_seq, 'task_started', e.id, e.owner_id,
        CASE WHEN was = 'queued' THEN 1 END,
        st.waiting + st.running + st.retrying, st.paused, payload, win, now
    );
    RETURN jsonb_build_object(
        'outcome', 'claimed',
        'entry', to_jsonb(e),
        'event', jsonb_build_object(
            'seq', st.last_seq,
            'global_position', CASE WHEN was = 'queued' THEN 1 END,
            'queue_length', st.waiting + st.running + st.retrying,
            'paused', st.paused,
            'payload', payload,
            'window', win
        )
    );
END
$$;
"""

FUNCTIONS = (ISOFORMAT, JSON_FLOAT, ENTRY_PAYLOAD, CLAIM_NEXT)
DROP = (
    "DROP FUNCTION IF EXISTS queue_claim_next(text, timestamptz, timestamptz, bigint, text,"
    " integer[]); DROP FUNCTION IF EXISTS queue_entry_payload(uuid, integer);"
    " DROP FUNCTION IF EXISTS queue_json_float(double precision);"
    " DROP FUNCTION IF EXISTS queue_isoformat(timestamptz);"
)


def create(apps, schema_editor) -> None:
    _run(schema_editor, FUNCTIONS)


def drop(apps, schema_editor) -> None:
    _run(schema_editor, [DROP])


def _run(schema_editor, statements) -> None:
    """Each statement as it is (no parameters, so "%ROWTYPE" is not a placeholder)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("queue_app", "0008_event_created_at_given"),
    ]

    operations = [migrations.RunPython(create, drop)]
