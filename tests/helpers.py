"""Helpers shared by the tests: plain functions and constants (fixtures are in
tests/conftest.py, and a directory's own in its conftest.py)."""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings

from queue_app.models import QueueEntry, QueueEvent, QueueState

# Every user the fixtures make has this password.
PASSWORD = "test-password-not-secret"


def clear_cache() -> None:
    """Delete this project's cache keys and Fathom rate-limit buckets only. cache.clear()
    would FLUSHDB the Redis database that the tests' broker and channel layer share."""
    cache = settings.CACHES["default"]
    for url, pattern in [
        (cache["LOCATION"], f"{cache['KEY_PREFIX']}:*"),
        (settings.REDIS_URL, "fathomloom:fathom-ratelimit:*"),
    ]:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(pattern))
        if keys:
            client.delete(*keys)


def queue_rows() -> dict[str, list[dict[str, Any]]]:
    """Every queue row with every column: equal before and after means nothing was written."""
    return {
        "entries": list(QueueEntry.objects.order_by("id").values()),
        "events": list(QueueEvent.objects.order_by("seq").values()),
        "state": list(QueueState.objects.values()),
    }


def assert_error(response, status: int, code: str) -> dict[str, Any]:
    """The JSON error body of `response`, checked to have `status` and `code`."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def record_commands(monkeypatch) -> list[bytes]:
    """The commands psycopg sends of its own from now on (BEGIN before a transaction's
    first statement, COMMIT, ROLLBACK), which CaptureQueriesContext does not see."""
    from django.db import connection

    connection.ensure_connection()
    raw, commands = connection.connection, []
    send = raw._exec_command

    def recorded(command, *args, **kwargs):
        commands.append(bytes(command))
        return send(command, *args, **kwargs)

    monkeypatch.setattr(raw, "_exec_command", recorded)
    return commands
