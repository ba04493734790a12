"""One-time socket tickets: short-lived, single-use credentials for `?token=` on a socket.

Long-lived API tokens should not travel in URLs (they end up in proxy logs); a ticket is
worth one connection within 60 seconds. Redis keeps only a hash of each ticket, and
GETDEL makes using one atomic, so two sockets can never share it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

TICKET_TTL_SECONDS = 60
_KEY_PREFIX = "fathomloom:ws-ticket:"
_sync_client: redis.Redis | None = None
_async_clients: dict[int, aioredis.Redis] = {}


def fingerprint(secret: str) -> str:
    """A stable, non-reversible name for a credential (session key, token, ticket)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


def _client() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
    return _sync_client


def _async_client() -> aioredis.Redis:
    import asyncio

    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        client = _async_clients[loop_id] = aioredis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5
        )
    return client


def issue_ticket(*, user_id: int, credential: str | None) -> str:
    """A new ticket for `user_id`. `credential` names what asked for it, for revocation."""
    ticket = secrets.token_urlsafe(32)
    value = json.dumps({"user_id": user_id, "credential": credential})
    _client().set(_KEY_PREFIX + fingerprint(ticket), value, ex=TICKET_TTL_SECONDS)
    return ticket


async def aredeem_ticket(ticket: str) -> dict[str, Any] | None:
    """The ticket's owner and credential, once; None if unknown, expired or used."""
    if not ticket or len(ticket) > 200:
        return None
    value = await _async_client().getdel(_KEY_PREFIX + fingerprint(ticket))
    if value is None:
        return None
    return json.loads(value)
