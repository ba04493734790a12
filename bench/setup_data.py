"""The bench database: created if missing, migrated, and filled in bulk with SQL.

Bench users, their API tokens, meetings and queue entries are written with a few
INSERT ... SELECT generate_series statements: 100,000 entries take a second or two this
way against minutes through the ORM.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse, urlunparse

BENCH_USERS = 200
STAFF_USERNAME = "bench-staff"


def ensure_database(url: str) -> None:
    """CREATE DATABASE when the one DATABASE_URL names does not exist yet."""
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin_url = urlunparse(parsed._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)


def reset_queue() -> None:
    """Empty the queue tables and the bench users (their meetings go with them)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE queue_app_queueevent, queue_app_queueentry, queue_app_meeting,"
            " queue_app_queuestate, queue_app_queueowner CASCADE"
        )
        cursor.execute(
            "INSERT INTO queue_app_queuestate (id, paused, last_seq, waiting, running, retrying,"
            " next_arrival, top_round, head_round, pause_note, updated_at)"
            " VALUES (1, false, 0, 0, 0, 0, 1, 0, 0, '', now())"
        )


def users_and_tokens() -> tuple[list[tuple[int, str]], tuple[int, str]]:
    """BENCH_USERS regular users and one staff user, each with an API token (made once)."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    User = get_user_model()
    names = [f"bench-user-{i}" for i in range(BENCH_USERS)] + [STAFF_USERNAME]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    User.objects.bulk_create(
        [
            User(username=name, is_staff=name == STAFF_USERNAME, password="!")
            for name in names
            if name not in existing
        ]
    )
    users = {u.username: u for u in User.objects.filter(username__in=names)}
    have = set(Token.objects.filter(user__in=users.values()).values_list("user_id", flat=True))
    Token.objects.bulk_create(
        [
            Token(user=user, key=os.urandom(20).hex())
            for user in users.values()
            if user.pk not in have
        ]
    )
    tokens = dict(Token.objects.filter(user__in=users.values()).values_list("user_id", "key"))
    regular = [(users[n].pk, tokens[users[n].pk]) for n in names[:-1]]
    staff = users[STAFF_USERNAME]
    return regular, (staff.pk, tokens[staff.pk])


def add_entries(owner_ids: list[int], count: int, status: str = "queued") -> None:
    """`count` meetings and an entry for each, owners round-robin, at the back of the line:
    each owner's k-th entry of the batch in the round after the line's last, as fair share
    would have put them (services/ordering.py's key layout); then the queue state's counts
    from the rows (ordering.recount), as the services keep them."""
    from django.db import connection, transaction

    from queue_app.services import ordering
    from queue_app.services.changes import lock_queue

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(recording_id), 0) FROM queue_app_meeting")
        first = cursor.fetchone()[0] + 1
        cursor.execute("SELECT top_round + 1, next_arrival FROM queue_app_queuestate")
        round_, arrival = cursor.fetchone()
        cursor.execute(
            """
            INSERT INTO queue_app_meeting (owner_id, recording_id, title, meeting_title, url,
                share_url, summary, raw, created_at, updated_at, meeting_type, meeting_url, team,
                transcript, media_kind, share_access)
            SELECT (%s::int[])[1 + (g %% %s)], g, 'Bench meeting ' || g, 'Weekly sync', '', '',
                '', '{}', now(), now(), '', '', '', '[]', '', 'anyone'
            FROM generate_series(%s, %s) g
            """,
            [owner_ids, len(owner_ids), first, first + count - 1],
        )
        cursor.execute(
            """
            INSERT INTO queue_app_queueentry (id, meeting_id, owner_id, status, order_key,
                attempts, max_attempts, last_error, worker, stage, progress, result_url,
                created_at, updated_at, started_at, lease_expires_at)
            SELECT gen_random_uuid(), m.id, m.owner_id, %s,
                ((%s + (m.recording_id - %s) / %s)::bigint << 44)
                    + (%s + m.recording_id - %s)::bigint * 65536,
                0, 5, '', '', '', 0, '', now(), now(),
                CASE WHEN %s = 'running' THEN now() END,
                CASE WHEN %s = 'running' THEN now() + interval '1 day' END
            FROM queue_app_meeting m WHERE m.recording_id BETWEEN %s AND %s
            """,
            [
                status,
                round_,
                first,
                len(owner_ids),
                arrival,
                first,
                status,
                status,
                first,
                first + count - 1,
            ],
        )
        cursor.execute("ANALYZE queue_app_queueentry")
    with transaction.atomic():
        ordering.recount(lock_queue())


def connect_users(count: int) -> list[tuple[int, str]]:
    """`count` regular users of their own ("bench-connect-N"), each with an API token
    (made once): the connect scenario's sockets, one user each, so that nothing a socket
    needs is already cached for another's sake."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    User = get_user_model()
    names = [f"bench-connect-{i}" for i in range(count)]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    User.objects.bulk_create(
        [User(username=name, password="!") for name in names if name not in existing],
        batch_size=1000,
    )
    ids = dict(User.objects.filter(username__in=names).values_list("username", "id"))
    have = set(Token.objects.filter(user_id__in=ids.values()).values_list("user_id", flat=True))
    Token.objects.bulk_create(
        [
            Token(user_id=user_id, key=os.urandom(20).hex())
            for user_id in ids.values()
            if user_id not in have
        ],
        batch_size=1000,
    )
    tokens = dict(Token.objects.filter(user_id__in=ids.values()).values_list("user_id", "key"))
    return [(ids[name], tokens[ids[name]]) for name in names]
