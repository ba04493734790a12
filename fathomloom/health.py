"""Liveness (/healthz) and readiness (/readyz) probes.

/readyz checks every part a request may need: the database, Redis, and a round trip
through the channel layer. Each check has its own short timeout so that a dead part
shows up as a 503 naming it, not as a hung probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils.log import log_response

CHECK_TIMEOUT_SECONDS = 2.0


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _check_database() -> None:
    await sync_to_async(_database_ok, thread_sensitive=True)()


async def _check_redis() -> None:
    client = aioredis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    # The default prefix, shared with the consumers' channels (one receive loop per prefix).
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "readyz.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "readyz.ping":
        raise RuntimeError("channel layer returned an unexpected message")


CHECKS: dict[str, Callable[[], Awaitable[None]]] = {
    "database": _check_database,
    "redis": _check_redis,
    "channel_layer": _check_channel_layer,
}


async def _run_check(check: Callable[[], Awaitable[None]]) -> dict[str, object]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure makes the part "down"; the probe itself must answer
        # The exception class only: a message could carry a URL with a password in it.
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "ok", "ms": round((time.perf_counter() - started) * 1000, 1)}


async def readyz(request: HttpRequest) -> JsonResponse:
    results = await asyncio.gather(*(_run_check(check) for check in CHECKS.values()))
    parts = dict(zip(CHECKS, results, strict=True))
    failed = [name for name, result in parts.items() if result["status"] != "ok"]
    body = {"status": "ok" if not failed else "unavailable", "failed": failed, "checks": parts}
    response = JsonResponse(body, status=503 if failed else 200)
    if failed:
        # A part that is down is an outage, not a bug: one WARNING per probe naming the parts,
        # instead of Django's ERROR line for every 5xx (which would page for each probe).
        log_response(
            "readyz: %s down",
            ", ".join(failed),
            response=response,
            request=request,
            level="warning",
        )
    return response
