"""Socket authentication by ticket or token survives a Redis restart (issue 11, case 1).

A `?token=` of a ticket's length is looked up in Redis first (realtime/tickets.py). Its client pools
connections; after Redis restarts, each pooled connection is dead. Before the fix every
one of them failed once (an HTTP 500 at the handshake) before it reconnected.

Through the whole WebSocket stack with Channels' WebsocketCommunicator, against a
private redis-server that the test restarts (never the shared one). The channel layer
stays on the test Redis: only the tickets' Redis restarts here.
"""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from realtime import tickets
from tests.faults.servers import PrivateRedis

# Committed rows: the consumer closes old database connections around connect and disconnect.
pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
CLOSE_TRY_AGAIN_LATER = 1013


@pytest.fixture
def tickets_on(redis_server: PrivateRedis, settings, monkeypatch) -> PrivateRedis:
    """Tickets in the private Redis, with clients made afresh for this test."""
    settings.REDIS_URL = redis_server.url()
    monkeypatch.setattr(tickets, "_sync_client", None)
    monkeypatch.setattr(tickets, "_async_clients", {})
    return redis_server


async def first_frame(token: str) -> dict:
    """Open a socket with `?token=`; the first thing the server sends (accept and a
    snapshot, or a close). An exception in the handshake propagates, as daphne sees it."""
    from fathomloom.asgi import application

    communicator = WebsocketCommunicator(
        application, f"/queue_updates?token={token}", headers=HEADERS
    )
    try:
        connected, code = await communicator.connect(timeout=5)
        if not connected:
            return {"type": "websocket.close", "code": code}
        frame = await communicator.receive_output(timeout=5)
        if frame["type"] == "websocket.send":
            return {"type": "snapshot", "text": frame["text"]}
        return frame
    finally:
        await communicator.disconnect()


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_ticket_socket_works_at_once_after_a_redis_restart(tickets_on, alice, caplog):
    async def scenario() -> list[dict]:
        # A first socket leaves a connection in the pool, as a running daphne has.
        seen = [await first_frame(tickets.issue_ticket(user_id=alice.pk, credential=None))]
        tickets_on.restart()
        seen.append(await first_frame(tickets.issue_ticket(user_id=alice.pk, credential=None)))
        return seen

    before, after = async_to_sync(scenario)()
    assert before["type"] == "snapshot"
    assert after["type"] == "snapshot", after
    assert no_errors_logged(caplog) == []


def test_an_api_token_socket_works_at_once_after_a_redis_restart(tickets_on, alice, caplog):
    token = Token.objects.create(user=alice).key

    async def scenario() -> list[dict]:
        seen = [await first_frame(token)]
        tickets_on.restart()
        seen.append(await first_frame(token))
        return seen

    before, after = async_to_sync(scenario)()
    assert before["type"] == "snapshot"
    assert after["type"] == "snapshot", after
    assert no_errors_logged(caplog) == []


def test_issuing_a_ticket_works_at_once_after_a_redis_restart(tickets_on, alice):
    tickets.issue_ticket(user_id=alice.pk, credential=None)
    tickets_on.restart()
    ticket = tickets.issue_ticket(user_id=alice.pk, credential=None)
    assert async_to_sync(tickets.aredeem_ticket)(ticket)["user_id"] == alice.pk


def test_a_ticket_socket_opened_while_redis_is_down_gets_1013_then_works_once_it_is_back(
    tickets_on, alice, caplog
):
    async def scenario() -> list[dict]:
        ticket = tickets.issue_ticket(user_id=alice.pk, credential=None)
        tickets_on.stop()
        try:
            seen = [await first_frame(ticket)]
        finally:
            tickets_on.start()
        seen.append(await first_frame(tickets.issue_ticket(user_id=alice.pk, credential=None)))
        return seen

    down, back = async_to_sync(scenario)()
    assert down == {"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER}
    assert back["type"] == "snapshot"
    assert no_errors_logged(caplog) == []


def test_an_api_token_socket_needs_no_redis(tickets_on, alice, caplog):
    """Only a token of a ticket's length is looked up in Redis: an API token's socket
    opens while the tickets' Redis is down."""
    token = Token.objects.create(user=alice).key
    assert len(token) != tickets.TICKET_LENGTH

    async def scenario() -> dict:
        tickets_on.stop()
        try:
            return await first_frame(token)
        finally:
            tickets_on.start()

    assert async_to_sync(scenario)()["type"] == "snapshot"
    assert no_errors_logged(caplog) == []
