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
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from realtime.batching import batcher

TICKET_TTL_SECONDS = 60
# Every ticket is secrets.token_urlsafe(32): 43 characters. API tokens are 40 hex digits,
# so a `?token=` of another length is never looked up in Redis (realtime.auth).
TICKET_BYTES = 32
TICKET_LENGTH = len(secrets.token_urlsafe(TICKET_BYTES))
_KEY_PREFIX = "fathomloom:ws-ticket:"
_sync_client: redis.Redis | None = None
_async_clients: dict[int, aioredis.Redis] = {}

# After Redis restarts, every pooled connection is dead. `from_url` gives its connections
# no retry, so each would fail one command (a 500 at a socket's handshake) before it
# reconnected. A retry reconnects at once; while Redis is down the command still fails
# within a second (3 refused connects). GETDEL retried after a reply was lost finds the
# ticket gone: that socket is refused (4401) and its client asks for a new ticket.
_RETRY_ON = (RedisConnectionError, RedisTimeoutError)
_CLIENT_OPTIONS: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2}


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=0.5, base=0.05)


def fingerprint(secret: str) -> str:
    """A stable, non-reversible name for a credential (session key, token, ticket)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


def _client() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(
            settings.REDIS_URL,
            retry=Retry(_backoff(), retries=3, supported_errors=_RETRY_ON),
            **_CLIENT_OPTIONS,
        )
    return _sync_client


def _async_client() -> aioredis.Redis:
    import asyncio

    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        client = _async_clients[loop_id] = aioredis.Redis.from_url(
            settings.REDIS_URL,
            retry=AsyncRetry(_backoff(), retries=3, supported_errors=_RETRY_ON),
            **_CLIENT_OPTIONS,
        )
    return client


def issue_ticket(*, user_id: int, credential: str | None) -> str:
    """A new ticket for `user_id`. `credential` names what asked for it, for revocation."""
    ticket = secrets.token_urlsafe(TICKET_BYTES)
    value = json.dumps({"user_id": user_id, "credential": credential})
    _client().set(_KEY_PREFIX + fingerprint(ticket), value, ex=TICKET_TTL_SECONDS)
    return ticket


async def aredeem_ticket(ticket: str) -> dict[str, Any] | None:
    """The ticket's owner and credential, once; None if unknown, expired or used.

    Tickets redeemed together go to Redis in one pipeline (realtime.batching): a burst
    of sockets is one round trip on one pooled connection, where a command each opened a
    connection each (the pool grows to the commands in flight)."""
    if not ticket or len(ticket) > 200:
        return None
    # once=True: two sockets presenting one ticket in the same trip get it once between
    # them, as two GETDELs one after the other would.
    value = await batcher("tickets", _redeem_all, in_thread=False, once=True).get(
        _KEY_PREFIX + fingerprint(ticket)
    )
    if value is None:
        return None
    return json.loads(value)


async def _redeem_all(keys: dict[str, Any]) -> dict[str, Any]:
    """GETDEL of every key, pipelined (not a transaction: each GETDEL is atomic alone)."""
    async with _async_client().pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.getdel(key)
        values = await pipe.execute()
    return dict(zip(keys, values, strict=True))
