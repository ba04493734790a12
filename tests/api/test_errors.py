"""Every answer under /api/ is JSON `{"code", "detail"}`: application errors, unknown paths,
a database or Redis that is down (503), and bugs (500). Fathom's webhook answers alike."""

from __future__ import annotations

import logging

import pytest
import redis.exceptions
from django.db import InterfaceError, OperationalError
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient
from rest_framework.views import APIView

from queue_app import errors, selectors
from queue_app.errors import ApplicationError
from queue_app.models import FathomAccount
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


def subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *subclasses(sub)]
    return found


def failing(monkeypatch, exc: BaseException) -> None:
    """Make GET /api/queue raise `exc` from the selector it calls."""

    def raise_it(*args, **kwargs):
        raise exc

    monkeypatch.setattr(selectors, "queue_snapshot_for", raise_it)


# --- paths no view answers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/queue/",  # API paths have no trailing slash
        "/api/nope",
        "/api/nope/",
        "/api/queue/some-id/retry/",
        "/api/credentials/fathom/webhook/x",
    ],
)
def test_an_unknown_api_path_gets_a_json_404(client_for, alice, path):
    for client in (APIClient(), client_for(alice)):
        for method in ("get", "post", "delete"):
            body = assert_error(getattr(client, method)(path), 404, "not_found")
            assert set(body) == {"code", "detail"}


def test_with_debug_on_api_paths_still_answer_in_json(client_for, alice, monkeypatch, settings):
    """`make run` turns DEBUG on; Django's HTML debug pages must not reach API clients."""
    settings.DEBUG = True
    client = client_for(alice)
    client.raise_request_exception = False
    assert_error(client.get("/api/nope"), 404, "not_found")
    failing(monkeypatch, KeyError("a bug"))
    response = client.get("/api/queue")
    assert_error(response, 500, "server_error")
    assert "a bug" not in response.content.decode()
    # Elsewhere the debug page stays.
    page = client.get("/no-such-page")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_an_unknown_path_elsewhere_still_gets_djangos_html_404():
    response = Client().get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_an_api_path_with_a_slash_form_is_still_redirected_to_it():
    # APPEND_SLASH (CommonMiddleware) redirects before any 404 is answered.
    response = Client().get("/api/docs")
    assert response.status_code == 301
    assert response["Location"] == "/api/docs/"


def test_a_method_a_view_does_not_take_gets_json_405(client_for, alice):
    response = client_for(alice).put("/api/queue", {}, format="json")
    assert_error(response, 405, "method_not_allowed")


# --- services that are down -------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError("could not connect to server: Connection refused"),
        InterfaceError("connection already closed"),
        redis.exceptions.ConnectionError("Error 111 connecting to localhost:6379."),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
    ],
    ids=lambda exc: f"{type(exc).__module__}.{type(exc).__name__}",
)
def test_a_database_or_redis_that_is_down_gets_503_unavailable(
    client_for, alice, monkeypatch, caplog, exc
):
    failing(monkeypatch, exc)

    with caplog.at_level(logging.WARNING):
        response = client_for(alice).get("/api/queue")

    body = assert_error(response, 503, "unavailable")
    assert set(body) == {"code", "detail"}
    assert str(exc) not in response.content.decode()
    # One WARNING line naming the service and the exception's class, not its message.
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelname for r in records] == ["WARNING"], [r.getMessage() for r in records]
    assert type(exc).__name__ in records[0].getMessage()
    assert str(exc) not in records[0].getMessage()
    assert records[0].exc_info is None


def test_redis_down_in_a_view_outside_queue_app_gets_503_too(client_for, alice, monkeypatch):
    # POST /api/ws-ticket is realtime's DRF view: the same handler serves it.
    def down(**kwargs):
        raise redis.exceptions.ConnectionError("Error 111 connecting to localhost:6379.")

    monkeypatch.setattr("realtime.views.issue_ticket", down)

    assert_error(client_for(alice).post("/api/ws-ticket"), 503, "unavailable")


# --- bugs ---------------------------------------------------------------------------------------


def test_an_unexpected_exception_gets_a_json_500_and_is_logged_with_its_traceback(
    client_for, alice, monkeypatch, caplog
):
    failing(monkeypatch, KeyError("a bug"))
    client = client_for(alice)
    client.raise_request_exception = False

    response = client.get("/api/queue")

    body = assert_error(response, 500, "server_error")
    assert set(body) == {"code", "detail"}
    assert "a bug" not in response.content.decode()
    errors_logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors_logged) == 1
    assert errors_logged[0].name == "django.request"
    assert errors_logged[0].exc_info[0] is KeyError


def test_an_unexpected_exception_still_reaches_a_test_client_that_raises_it(
    client_for, alice, monkeypatch
):
    # Django's got_request_exception still fires, so a test not expecting a bug sees it.
    failing(monkeypatch, KeyError("a bug"))

    with pytest.raises(KeyError):
        client_for(alice).get("/api/queue")


# --- the application's errors -------------------------------------------------------------------

# What clients get today for each error: codes and statuses are a contract.
CONTRACT = {
    errors.QueueError: (400, "queue_error"),
    errors.AlreadyQueued: (409, "already_queued"),
    errors.InvalidState: (409, "invalid_state"),
    errors.InvalidPosition: (400, "invalid_position"),
    errors.EntryNotFound: (404, "not_found"),
    errors.AccountError: (400, "account_error"),
    errors.FathomNotConnected: (400, "fathom_not_connected"),
    errors.FathomKeyRejected: (400, "fathom_key_rejected"),
    errors.FathomUnreachable: (503, "fathom_unavailable"),
    errors.FathomBadResponse: (502, "fathom_bad_response"),
    errors.InvalidWebhookSecret: (400, "invalid_webhook_secret"),
    errors.CredentialDecryptError: (503, "credential_unreadable"),
    errors.InvalidCredentials: (400, "invalid_credentials"),
    errors.WebhookVerificationError: (401, "invalid_signature"),
    errors.MissingHeaders: (401, "missing_headers"),
    errors.StaleTimestamp: (401, "stale_timestamp"),
    errors.InvalidSignature: (401, "invalid_signature"),
    errors.MalformedHeaders: (400, "malformed_headers"),
    errors.MalformedBody: (400, "malformed_body"),
    errors.DeliveryTooLarge: (413, "too_large"),
}


def test_the_contract_covers_the_errors_services_raise():
    domain = {errors.QueueError, errors.AccountError, errors.WebhookError}
    raised_by_services = {c for base in domain for c in [base, *subclasses(base)]}
    assert raised_by_services - {errors.WebhookError} <= set(CONTRACT)


@pytest.mark.parametrize("cls", CONTRACT, ids=lambda cls: cls.__name__)
def test_each_application_error_keeps_its_status_and_code(cls):
    assert (cls.status, cls.code) == CONTRACT[cls]


@pytest.mark.parametrize("cls", subclasses(ApplicationError), ids=lambda cls: cls.__name__)
def test_each_application_error_reaches_the_client_with_its_status_and_code(
    client_for, alice, monkeypatch, cls
):
    failing(monkeypatch, cls("Something specific went wrong."))

    response = client_for(alice).get("/api/queue")

    body = assert_error(response, cls.status, cls.code)
    assert body == {"code": cls.code, "detail": "Something specific went wrong."}
    assert "Retry-After" not in response


def test_an_error_without_a_message_gets_its_default_detail(client_for, alice, monkeypatch):
    failing(monkeypatch, errors.CredentialDecryptError())

    body = assert_error(client_for(alice).get("/api/queue"), 503, "credential_unreadable")

    assert body["detail"] == errors.CredentialDecryptError.default_detail


def test_retry_after_becomes_a_header(client_for, alice, monkeypatch):
    failing(monkeypatch, errors.FathomUnreachable("Fathom is down.", retry_after=2.4))

    response = client_for(alice).get("/api/queue")

    assert_error(response, 503, "fathom_unavailable")
    assert response["Retry-After"] == "2"


def test_fields_reach_the_client(client_for, alice, monkeypatch):
    fields = {"position": ["Must be at least 1."]}
    failing(monkeypatch, errors.InvalidInput("position: Must be at least 1.", fields=fields))

    body = assert_error(client_for(alice).get("/api/queue"), 400, "invalid")

    assert body["fields"] == fields


def test_no_api_view_overrides_the_exception_handler():
    def views(resolver: URLResolver, prefix: str = ""):
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                yield from views(pattern, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern.callback

    drf_views = [
        (path, callback.cls)
        for path, callback in views(get_resolver())
        if path.startswith("api/") and hasattr(callback, "cls")
    ]
    assert len(drf_views) > 10
    for path, cls in drf_views:
        assert cls.get_exception_handler is APIView.get_exception_handler, path


# --- Fathom's webhook ---------------------------------------------------------------------------


def test_the_webhooks_refusals_have_the_same_shape(settings):
    client = Client()

    for response, status, code in [
        (client.get("/webhooks/fathom"), 405, "method_not_allowed"),
        (client.post("/webhooks/fathom?account=nobody", b"{}", "application/json"), 401, None),
    ]:
        body = assert_error(response, status, code or "invalid_signature")
        assert set(body) == {"code", "detail"}

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    too_large = client.post("/webhooks/fathom?account=x", b"{}" * 100, "application/json")
    assert assert_error(too_large, 413, "too_large") == {
        "code": "too_large",
        "detail": errors.DeliveryTooLarge.default_detail,
    }


def test_a_bug_in_the_webhook_gets_a_json_500(monkeypatch):
    def broken(**kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(FathomAccount.objects, "filter", broken)
    client = Client(raise_request_exception=False)

    response = client.post("/webhooks/fathom?account=x", b"{}", "application/json")

    assert_error(response, 500, "server_error")


def test_drf_errors_keep_their_codes_and_headers(client_for, alice):
    anonymous = APIClient().get("/api/queue")
    assert_error(anonymous, 401, "not_authenticated")
    assert anonymous["WWW-Authenticate"] == "Token"

    not_acceptable = client_for(alice).get("/api/queue", HTTP_ACCEPT="text/csv")
    assert_error(not_acceptable, 406, "not_acceptable")

    invalid = client_for(alice).post("/api/queue", {"meeting_id": "x"}, format="json")
    body = assert_error(invalid, 400, "invalid")
    assert set(body["fields"]) == {"meeting_id"}
    assert body["detail"].startswith("meeting_id: ")
