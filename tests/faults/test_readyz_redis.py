"""/readyz follows Redis: down while it is, up as soon as it is back (issue 11, case 5).

The channel layer keeps its Redis connections in a pool per event loop for the life of
the process. Before the fix they had no retry: after a Redis restart each pooled
connection failed its next command once, so /readyz (and every publish and group_add
using that connection) kept failing until every dead connection had been used.

In this process, the layer configured as in the settings but on a private redis-server
that the test restarts (never the shared one).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from fathomloom import health
from tests.faults.servers import PrivateRedis

pytestmark = pytest.mark.django_db


@pytest.fixture
def layer_on(redis_server: PrivateRedis, settings) -> PrivateRedis:
    """REDIS_URL and the channel layer (with the settings' own host options) on the
    private Redis; Channels drops its cached layer when the setting changes."""
    settings.REDIS_URL = redis_server.url()
    default = settings.CHANNEL_LAYERS["default"]
    hosts = [{**host, "address": redis_server.url()} for host in default["CONFIG"]["hosts"]]
    settings.CHANNEL_LAYERS = {
        **settings.CHANNEL_LAYERS,
        "default": {**default, "CONFIG": {**default["CONFIG"], "hosts": hosts}},
    }
    return redis_server


async def readyz() -> tuple[int, dict[str, Any]]:
    """GET /readyz through Django's handler, which logs its answer as daphne's would."""
    response = await AsyncClient().get("/readyz")
    return response.status_code, response.json()


def test_readyz_is_ok_at_once_when_redis_is_back(layer_on):
    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        # Traffic leaves several connections in the layer's pool, as in a busy daphne.
        for _ in range(3):
            await asyncio.gather(*(health._check_channel_layer() for _ in range(4)))
        seen = [await readyz()]
        layer_on.restart()
        seen += [await readyz() for _ in range(3)]
        return seen

    before, *after = async_to_sync(scenario)()
    assert before[0] == 200, before
    assert [status for status, _ in after] == [200, 200, 200], after


def test_readyz_while_redis_is_down_is_503_naming_it_and_logs_no_error(layer_on, caplog):
    caplog.set_level(logging.INFO)

    async def scenario() -> tuple[int, dict[str, Any]]:
        await readyz()
        layer_on.stop()
        try:
            return await readyz()
        finally:
            layer_on.start()

    status, body = async_to_sync(scenario)()
    assert status == 503
    assert set(body["failed"]) == {"redis", "channel_layer"}
    assert layer_on.url() not in str(body)
    # An outage is not a bug: one WARNING naming the parts, no ERROR line per probe.
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert any("redis" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
