"""HTTP while the database is down: 503 `unavailable`, never a 500 (issue 11, case 3).

DRF views already answered 503 (queue_app.api.errors.exception_handler). Before the fix,
the same outage outside a DRF view - the webhook view, a page, or a middleware that
looks up the session or user before any view runs - was a 500 (`server_error` under
/api/, Django's HTML page elsewhere) logged at ERROR with a traceback.

The outage is simulated in this process: every query raises OperationalError, as psycopg
does when PostgreSQL is gone. tests/faults/test_fault_suite.py does it for real.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from django.db import OperationalError, connection
from django.http import HttpRequest, HttpResponse
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

# What psycopg says; a host name in it must never reach a client.
DRIVER_MESSAGE = 'connection to server at "db.internal" (10.0.0.5), port 5432 failed'


class UserLookupMiddleware:
    """Looks up the signed-in user before any view, as many middlewares do (Django's
    LoginRequiredMiddleware, a "last seen" stamp): a session and a user query."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.user.is_authenticated  # noqa: B018 - evaluated for its queries
        return self.get_response(request)


@pytest.fixture
def database_down(monkeypatch) -> Callable[[], None]:
    def down() -> None:
        def refuse(*args, **kwargs):
            raise OperationalError(DRIVER_MESSAGE)

        monkeypatch.setattr(connection, "_cursor", refuse)

    return down


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def assert_unavailable(response, caplog) -> None:
    assert_error(response, 503, "unavailable")
    assert "db.internal" not in response.content.decode()
    assert errors_logged(caplog) == []
    assert any(r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize("debug", [False, True])
def test_the_webhook_view_answers_503_while_the_database_is_down(
    database_down, caplog, settings, debug
):
    settings.DEBUG = debug
    client = Client(raise_request_exception=False)
    database_down()
    response = client.post(
        "/webhooks/fathom?account=" + "a" * 32,
        data=b"{}",
        content_type="application/json",
        headers={"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
    )
    assert_unavailable(response, caplog)


@pytest.mark.parametrize("credential", ["session", "token"])
def test_a_middleware_that_finds_the_database_down_gives_503_json(
    database_down, caplog, settings, alice, credential
):
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "tests.faults.test_database_down_http.UserLookupMiddleware",
    ]
    client = Client(raise_request_exception=False)
    headers = {}
    if credential == "session":
        client.force_login(alice)
    else:
        headers["Authorization"] = f"Token {Token.objects.create(user=alice).key}"
    database_down()
    for response in (
        client.get("/api/queue", headers=headers),
        client.post("/api/queue", {"meeting_id": 1}, "application/json", headers=headers),
    ):
        assert_unavailable(response, caplog)


def test_an_api_view_gives_503_json_with_a_session_or_a_token(database_down, caplog, alice):
    token = Token.objects.create(user=alice).key
    session = Client(raise_request_exception=False)
    session.force_login(alice)
    database_down()
    assert_unavailable(session.get("/api/queue"), caplog)
    anonymous = Client(raise_request_exception=False)
    assert_unavailable(
        anonymous.get("/api/queue", headers={"Authorization": f"Token {token}"}), caplog
    )


def test_a_page_answers_503_not_a_server_error_while_the_database_is_down(
    database_down, caplog, alice
):
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    database_down()
    response = client.get("/queue")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert b"try again" in response.content.lower()
    assert b"db.internal" not in response.content
    assert errors_logged(caplog) == []


@pytest.mark.django_db(transaction=True)
def test_a_socket_opened_while_the_database_is_down_gets_1013(database_down, caplog, alice):
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from fathomloom.asgi import application

    token = Token.objects.create(user=alice).key

    async def close_code() -> int | str | None:
        communicator = WebsocketCommunicator(
            application,
            f"/queue_updates?token={token}",
            headers=[(b"host", b"localhost"), (b"origin", b"http://localhost")],
        )
        try:
            connected, code = await communicator.connect(timeout=5)
            if connected:
                code = (await communicator.receive_output(timeout=5)).get("code")
        except Exception as failed:  # what daphne answers with HTTP 500
            return f"handshake failed: {type(failed).__name__}"
        await communicator.disconnect()
        return code

    database_down()
    assert async_to_sync(close_code)() == 1013
    assert errors_logged(caplog) == []
