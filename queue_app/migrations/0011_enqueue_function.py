"""An enqueue in one round trip on PostgreSQL: queue_enqueue(), the whole of
services.line.entry_enqueue's change (the queue lock, the meeting's check, fair share's
key from the owner's counter and the head's round, the entry, the counts, the position,
the event with its payload and window) run by the server, as queue_claim_next() does a
claim (migration 0009). Three round trips under the lock were ~1.5 ms of an enqueue's
~2.5 (bench/notes.md, "An enqueue in one round trip").

The Python enqueue stays the definition (SQLite runs it, and so does PostgreSQL when this
function answers `fallback`: no queue state row yet, or the arrival numbers run out and
the line is renumbered); tests/unit/test_enqueue_function.py holds the two to the same
rows, event and bytes of payload. A change to the enqueue, to fair share's keys
(services.ordering: the round's shift of 44 bits, the gap of 2**16, MAX_ARRIVAL), to
entry_payload or to the tables it writes needs a migration that replaces this function.
"""

from django.db import migrations

# Each statement of a plpgsql function takes its own snapshot (READ COMMITTED): every read
# after the lock sees what the transactions before it committed.
ENQUEUE = """
CREATE OR REPLACE FUNCTION queue_enqueue(
    new_id uuid,
    meeting bigint,
    owner integer,
    tries integer,
    now timestamptz,
    fair boolean,
    commit_level text
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    st queue_app_queuestate%ROWTYPE;
    e queue_app_queueentry%ROWTYPE;
    owner_waiting bigint := 0;
    owner_round bigint := 0;
    head bigint;
    round bigint;
    place bigint;
    payload jsonb;
    win jsonb;
BEGIN
    IF commit_level IS NOT NULL THEN
        PERFORM set_config('synchronous_commit', commit_level, true);
    END IF;
    SELECT * INTO st FROM queue_app_queuestate WHERE id = 1 FOR UPDATE;
    -- No state row (the Python enqueue makes it), or no arrival numbers left
    -- (ordering.MAX_ARRIVAL: the Python enqueue renumbers the line).
    IF NOT FOUND OR st.next_arrival + 1 > 268435455 THEN
        RETURN '{"outcome": "fallback"}'::jsonb;
    END IF;
    IF EXISTS (SELECT 1 FROM queue_app_queueentry WHERE meeting_id = meeting
               AND status IN ('queued', 'running', 'retrying')) THEN
        RETURN '{"outcome": "in_line"}'::jsonb;
    END IF;

    -- ordering.assign_keys
    SELECT waiting, last_round INTO owner_waiting, owner_round
    FROM queue_app_queueowner WHERE owner_id = owner;
    IF NOT FOUND THEN
        owner_waiting := 0;
        owner_round := 0;
    END IF;
    IF fair THEN
        SELECT order_key INTO head FROM queue_app_queueentry
        WHERE status = 'queued' ORDER BY order_key LIMIT 1;
        IF head IS NOT NULL THEN
            st.head_round := greatest(st.head_round, head >> 44);
        END IF;
        round := CASE WHEN owner_waiting > 0 THEN greatest(st.head_round, owner_round + 1)
                      ELSE st.head_round END;
        owner_round := round;
    ELSE
        round := st.top_round;
        owner_round := greatest(owner_round, round);
    END IF;
    INSERT INTO queue_app_queueentry
        (id, meeting_id, owner_id, status, order_key, attempts, max_attempts, last_error,
         next_attempt_at, lease_expires_at, worker, stage, progress, result_url, created_at,
         started_at, finished_at, updated_at)
    VALUES (new_id, meeting, owner, 'queued', (round << 44) + st.next_arrival * 65536, 0,
            tries, '', NULL, NULL, '', '', 0.0, '', now, NULL, NULL, now)
    RETURNING * INTO e;
    st.next_arrival := st.next_arrival + 1;
    st.top_round := greatest(st.top_round, round);
    st.waiting := st.waiting + 1;
    INSERT INTO queue_app_queueowner (owner_id, waiting, last_round)
    VALUES (owner, owner_waiting + 1, owner_round)
    ON CONFLICT (owner_id) DO UPDATE
    SET waiting = EXCLUDED.waiting, last_round = EXCLUDED.last_round;

    -- ordering.position_on_joining: counted from the nearer end of the line
    IF NOT fair OR st.top_round - round < round - st.head_round THEN
        place := st.waiting - (SELECT count(*) FROM queue_app_queueentry
                               WHERE status = 'queued' AND order_key > e.order_key);
    ELSE
        place := 1 + (SELECT count(*) FROM queue_app_queueentry
                      WHERE status = 'queued' AND order_key < e.order_key);
    END IF;

    -- changes.record: the state, then the event (nobody enters a window: a place was added)
    st.last_seq := st.last_seq + 1;
    UPDATE queue_app_queuestate SET
        waiting = st.waiting, running = st.running, retrying = st.retrying,
        next_arrival = st.next_arrival, top_round = st.top_round,
        head_round = st.head_round, last_seq = st.last_seq, updated_at = now
    WHERE id = 1;
    payload := jsonb_build_array(queue_entry_payload(e.id, place::integer));
    win := jsonb_build_object(
        'before', '[[null, null]]'::jsonb,
        'moved', jsonb_build_object(
            'removed', '[]'::jsonb, 'inserted', jsonb_build_array(jsonb_build_array(place, 1))),
        'entered', '[]'::jsonb,
        'waiting', st.waiting
    );
    INSERT INTO queue_app_queueevent
        (seq, update_type, entry_id, affected_user_id, global_position, queue_length, paused,
         payload, "window", created_at)
    VALUES (
        st.last_seq, 'meeting_added', e.id, owner, place,
        st.waiting + st.running + st.retrying, st.paused, payload, win, now
    );
    RETURN jsonb_build_object(
        'outcome', 'added',
        'entry', to_jsonb(e),
        'owner', payload -> 0 -> 'owner',
        'event', jsonb_build_object(
            'seq', st.last_seq,
            'global_position', place,
            'queue_length', st.waiting + st.running + st.retrying,
            'paused', st.paused,
            'payload', payload,
            'window', win
        )
    );
END
$$;
"""

DROP = (
    "DROP FUNCTION IF EXISTS queue_enqueue(uuid, bigint, integer, integer, timestamptz,"
    " boolean, text)"
)


def create(apps, schema_editor) -> None:
    _run(schema_editor, ENQUEUE)


def drop(apps, schema_editor) -> None:
    _run(schema_editor, DROP)


def _run(schema_editor, statement: str) -> None:
    """The statement as it is (no parameters, so "%ROWTYPE" is not a placeholder)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("queue_app", "0010_order_key_without_index"),
    ]

    operations = [migrations.RunPython(create, drop)]
