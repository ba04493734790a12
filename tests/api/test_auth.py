"""Tokens and sessions: obtaining, using, revoking, throttling; anonymous callers get 401."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.helpers import PASSWORD, assert_error, queue_rows

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/auth/token"


def obtain(api, username: str, password: str = PASSWORD):
    return api.post(TOKEN_URL, {"username": username, "password": password}, format="json")


def test_token_obtained_with_a_password_authenticates_later_calls(api, alice):
    response = obtain(api, "alice")
    assert response.status_code == 200
    token = response.json()["token"]
    assert Token.objects.get(user=alice).key == token

    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/queue").status_code == 200


def test_wrong_password_gets_no_token(api, alice):
    assert_error(obtain(api, "alice", "not-the-password"), 400, "invalid_credentials")
    assert_error(obtain(api, "nobody"), 400, "invalid_credentials")
    assert not Token.objects.exists()


def test_an_inactive_user_gets_no_token(api, alice):
    alice.is_active = False
    alice.save()
    assert_error(obtain(api, "alice"), 400, "invalid_credentials")
    assert not Token.objects.exists()


@pytest.mark.parametrize(
    "body",
    [{}, {"username": "alice"}, {"username": ["alice"], "password": PASSWORD}],
)
def test_token_request_of_the_wrong_shape_is_400(api, alice, body):
    body = assert_error(api.post(TOKEN_URL, body, format="json"), 400, "invalid")
    assert body["fields"]
    assert not Token.objects.exists()


def test_a_stale_token_header_does_not_block_signing_in(api, alice):
    api.credentials(HTTP_AUTHORIZATION="Token revoked-long-ago")
    assert obtain(api, "alice").status_code == 200


def test_token_requests_are_throttled_with_the_error_shape(api, alice):
    for _ in range(10):
        assert obtain(api, "alice", "guess").status_code == 400
    response = obtain(api, "alice")  # even the right password, until the minute is up
    body = assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    assert "token" not in body


def test_varying_x_forwarded_for_does_not_escape_the_throttle(api, alice):
    for attempt in range(10):
        response = api.post(
            TOKEN_URL,
            {"username": "alice", "password": f"guess-{attempt}"},
            format="json",
            HTTP_X_FORWARDED_FOR=f"10.0.0.{attempt}",
        )
        assert response.status_code == 400
    response = api.post(
        TOKEN_URL,
        {"username": "Alice", "password": PASSWORD},
        format="json",
        HTTP_X_FORWARDED_FOR="10.0.1.1",
    )
    assert_error(response, 429, "throttled")


def test_varying_the_username_does_not_escape_the_throttle(api, alice):
    for attempt in range(10):
        assert obtain(api, f"user{attempt}").status_code == 400
    assert_error(obtain(api, "alice"), 429, "throttled")


def test_a_revoked_token_stops_working_at_once(api, alice):
    token = obtain(api, "alice").json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/queue").status_code == 200

    assert api.delete(TOKEN_URL).status_code == 204

    assert not Token.objects.filter(key=token).exists()
    assert_error(api.get("/api/queue"), 401, "authentication_failed")
    assert_error(api.delete(TOKEN_URL), 401, "authentication_failed")


def test_revoking_by_session_deletes_the_users_token_only(client_for, api, alice, bob):
    alice_token = Token.objects.create(user=alice)
    bob_token = Token.objects.create(user=bob)
    assert client_for(alice).delete(TOKEN_URL).status_code == 204
    assert not Token.objects.filter(pk=alice_token.pk).exists()
    api.credentials(HTTP_AUTHORIZATION=f"Token {bob_token.key}")
    assert api.get("/api/queue").status_code == 200


def test_session_sign_in_works(api, alice):
    assert api.login(username="alice", password=PASSWORD)
    assert api.get("/api/queue").status_code == 200


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/queue"),
        ("post", "/api/queue"),
        ("get", "/api/meetings"),
        ("get", "/api/events"),
        ("delete", "/api/queue/00000000-0000-0000-0000-000000000000"),
        ("post", "/api/queue/clear"),
        ("delete", TOKEN_URL),
    ],
)
def test_anonymous_callers_get_401(api, method, url):
    response = getattr(api, method)(url)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_an_unknown_token_gets_401(api):
    api.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef")
    assert_error(api.get("/api/queue"), 401, "authentication_failed")


def test_a_session_write_without_the_csrf_token_is_refused(alice, make_meeting):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    meeting = make_meeting(alice)
    before = queue_rows()
    response = client.post("/api/queue", {"meeting_id": meeting.pk}, format="json")
    assert_error(response, 403, "permission_denied")
    assert queue_rows() == before
    assert client.get("/api/queue").status_code == 200  # reads need no CSRF token
