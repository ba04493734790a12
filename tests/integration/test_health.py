"""/healthz and /readyz against real daphne processes."""

from __future__ import annotations

import httpx
import pytest

from devtools.processes import free_port
from tests.processes import start_daphne

pytestmark = pytest.mark.integration


def test_healthz_answers(live_server_url):
    response = httpx.get(f"{live_server_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_every_part_is_up(live_server_url):
    response = httpx.get(f"{live_server_url}/readyz", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["failed"] == []
    assert {name: part["status"] for name, part in body["checks"].items()} == {
        "database": "ok",
        "redis": "ok",
        "channel_layer": "ok",
    }


def test_readyz_is_503_naming_redis_when_redis_is_down(process_env):
    closed = f"redis://127.0.0.1:{free_port()}/0"
    process, base_url = start_daphne({**process_env, "REDIS_URL": closed}, name="daphne-no-redis")
    try:
        response = httpx.get(f"{base_url}/readyz", timeout=10)
    finally:
        process.stop()
    assert response.status_code == 503
    body = response.json()
    assert "redis" in body["failed"]
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "ok"
    assert closed not in response.text
