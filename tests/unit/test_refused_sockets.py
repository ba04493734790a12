"""A refused socket (4401, 4403) closes quietly: no error logged, no traceback.

Through the whole WebSocket stack (origin check, session and token auth), as daphne runs
it, with Channels' WebsocketCommunicator in place of daphne.
"""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from realtime.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED

pytestmark = pytest.mark.django_db

# Allowed by AllowedHostsOriginValidator (settings.ALLOWED_HOSTS).
HEADERS = [(b"host", b"localhost"), (b"origin", b"http://localhost")]


async def close_code_of(path: str) -> int:
    """Open a socket at `path`, return the code it is closed with, then disconnect as a
    client does (which runs the consumer's disconnect())."""
    from fathomloom.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=HEADERS)
    connected, _ = await communicator.connect()
    assert connected  # accepted first, so that the close carries the code
    closed = await communicator.receive_output()
    assert closed["type"] == "websocket.close"
    # Before the fix this raised AttributeError (disconnect() unregistered a socket that
    # had never registered), which daphne logs as an ERROR with its traceback.
    await communicator.disconnect()
    return closed["code"]


def assert_nothing_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]


def test_a_socket_without_a_session_is_refused_quietly(caplog, settings):
    settings.REALTIME_PUBLIC_FEED = False
    caplog.set_level(logging.DEBUG)
    # async_to_sync: the middleware's database reads run in this thread, in the test's
    # transaction.
    assert async_to_sync(close_code_of)("/queue_updates") == CLOSE_UNAUTHENTICATED
    assert_nothing_logged_as_an_error(caplog)


def test_a_socket_asking_for_someone_elses_user_id_is_refused_quietly(caplog, settings, alice, bob):
    settings.REALTIME_PUBLIC_FEED = False
    caplog.set_level(logging.DEBUG)
    token = Token.objects.create(user=alice)
    path = f"/queue_updates?token={token.key}&user_id={bob.pk}"
    assert async_to_sync(close_code_of)(path) == CLOSE_FORBIDDEN
    assert_nothing_logged_as_an_error(caplog)
