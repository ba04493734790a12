"""Hostile Fathom credentials: keys and webhook secrets that Fathom never issues are refused
with a 400 before anything is stored or Fathom is asked, and in DEBUG (`make run`) an error
page never shows a submitted or stored key."""

from __future__ import annotations

import base64
import logging

import pytest

from queue_app import accounts, crypto
from queue_app.errors import InvalidInput
from queue_app.integrations.fathom import FathomClient
from queue_app.integrations.fathom import client as fathom_client_module
from queue_app.models import FathomAccount
from tests.accounts.conftest import ALICE_KEY
from tests.accounts.fakes import FakeFathom
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/credentials/fathom"

# Each becomes an X-Api-Key header if let through: non-ASCII cannot be encoded (a 500), a
# newline splits the header (Fathom "unreachable", 503), the rest are no key Fathom issues.
BAD_KEYS = {
    "latin-1": "fk_live_4Qz9é7Xw2mVn8",
    "emoji": "fk_live_4Qz9\U0001f600Xw2mVn8",
    "newline-inside": "fk_live_4Qz9\nX-Other: 1",
    "carriage-return": "fk_live_4Qz9\rXw2mVn8",
    "tab-inside": "fk_live_4Qz9\tXw2mVn8",
    "space-inside": "fk_live_4Qz9 Xw2mVn8",
    "nul": "fk_live_4Qz9\x00Xw2mVn8",
    "delete": "fk_live_4Qz9\x7fXw2mVn8",
    "escape": "fk_live_4Qz9\x1b[31mXw2",
    "line-separator": "fk_live_4Qz9\u2028Xw2mVn8",
    "zero-width-space": "fk_live_4Qz9\u200bXw2mVn8",
    # The same key in fullwidth forms (U+FF01-U+FF5E), as some keyboards type it.
    "fullwidth": "fk_live_4Qz9Xw2mVn8".translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)}),
}


def errors_logged(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize("key", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_a_key_fathom_never_issues_is_a_400_and_fathom_is_not_asked(
    client_for, alice, fathom, caplog, key
):
    response = client_for(alice).post(URL, {"api_key": key}, format="json")

    body = assert_error(response, 400, "invalid")
    assert list(body["fields"]) == ["api_key"]
    assert key not in response.content.decode()
    assert fathom.made == []  # no client, so no call
    assert not FathomAccount.objects.exists()
    assert errors_logged(caplog) == []


def test_a_bad_replacement_keeps_the_key_that_was_connected(client_for, alice, fathom):
    client = client_for(alice)
    client.post(URL, {"api_key": ALICE_KEY}, format="json")
    before = list(FathomAccount.objects.values())

    assert_error(client.post(URL, {"api_key": BAD_KEYS["newline-inside"]}, "json"), 400, "invalid")

    assert list(FathomAccount.objects.values()) == before
    assert len(fathom.made) == 1  # the first key's check only


def test_whitespace_around_a_pasted_key_is_still_trimmed(client_for, alice, fathom):
    response = client_for(alice).post(URL, {"api_key": f"  {ALICE_KEY}\n"}, format="json")
    assert response.status_code == 200, response.content
    assert accounts.fathom_api_key_for(alice) == ALICE_KEY


@pytest.mark.parametrize("key", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_the_service_refuses_such_keys_too(alice, fathom, key):
    """For callers other than the API (seed_demo, the shell): the same rule, same error."""
    with pytest.raises(InvalidInput) as refused:
        accounts.fathom_account_set_key(user=alice, api_key=key)
    assert list(refused.value.fields) == ["api_key"]
    assert key not in str(refused.value)
    assert fathom.made == []
    assert not FathomAccount.objects.exists()


@pytest.mark.parametrize("key", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_the_fathom_client_refuses_to_build_a_header_of_such_a_key(key):
    with pytest.raises(ValueError) as refused:
        FathomClient(key, base_url="http://127.0.0.1:9")
    assert key not in str(refused.value)


def test_the_fathom_client_takes_a_key_fathom_issues():
    FathomClient(ALICE_KEY, base_url="http://127.0.0.1:9").close()


SECRET = "whsec_" + base64.b64encode(b"fathom-webhook-signing-key-32byt").decode()
BAD_SECRETS = {
    "no-prefix": SECRET.removeprefix("whsec_"),
    "latin-1": SECRET[:10] + "é" + SECRET[10:],
    "newline-inside": SECRET[:10] + "\n" + SECRET[10:],
    "space-inside": SECRET[:10] + " " + SECRET[10:],
    "nul": SECRET[:10] + "\x00" + SECRET[10:],
    "too-short": "whsec_" + base64.b64encode(b"short").decode(),
    "other-prefix": "wh_sec_" + SECRET.removeprefix("whsec_"),
}


@pytest.mark.parametrize("secret", list(BAD_SECRETS.values()), ids=list(BAD_SECRETS))
def test_a_webhook_secret_fathom_never_shows_is_a_400(client_for, alice, fathom, caplog, secret):
    client = client_for(alice)
    client.post(URL, {"api_key": ALICE_KEY}, format="json")
    before = list(FathomAccount.objects.values())

    response = client.put(f"{URL}/webhook", {"secret": secret}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] in {"invalid", "invalid_webhook_secret"}
    assert secret not in response.content.decode()
    assert list(FathomAccount.objects.values()) == before
    assert errors_logged(caplog) == []


def test_a_webhook_secret_as_fathom_shows_it_is_stored(client_for, alice, fathom):
    client = client_for(alice)
    client.post(URL, {"api_key": ALICE_KEY}, format="json")
    response = client.put(f"{URL}/webhook", {"secret": SECRET}, format="json")
    assert response.status_code == 200 and response.json()["secret_set"] is True


# --- DEBUG error pages ---------------------------------------------------------------------------

BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
def debug_pages(settings, monkeypatch):
    """DEBUG on, as `make run` has it; collects every HTML debug page Django builds.

    Under /api/ the client gets JSON (JsonErrorsMiddleware), but Django builds its debug page
    first, with every frame's local variables: that page is what must hold no secret.
    """
    settings.DEBUG = True
    pages: list[str] = []
    from django.views import debug

    build = debug.technical_500_response

    def keep(*args, **kwargs):
        response = build(*args, **kwargs)
        pages.append(response.content.decode())
        return response

    monkeypatch.setattr(debug, "technical_500_response", keep)
    return pages


def failing(monkeypatch, target: object, name: str) -> None:
    """Make `target.name` raise: a bug deep in the key's path, with the key in the locals."""

    def fail(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(target, name, fail)


def browser_client(client_for, user):
    client = client_for(user)
    client.raise_request_exception = False
    return client


def assert_hidden(response, pages: list[str], *secrets: str) -> None:
    assert response.status_code == 500
    assert len(pages) == 1, "no debug page was built: the test shows nothing"
    assert "********************" in pages[0]  # the filter did cleanse frames
    for secret in secrets:
        assert secret not in response.content.decode()
        assert secret not in pages[0]


def test_a_debug_page_does_not_show_a_key_being_connected(
    client_for, alice, fathom, debug_pages, monkeypatch
):
    failing(monkeypatch, crypto, "encrypt")  # after Fathom accepted the key
    response = browser_client(client_for, alice).post(
        URL, {"api_key": ALICE_KEY}, format="json", **BROWSER
    )
    assert_hidden(response, debug_pages, ALICE_KEY)


def test_a_debug_page_does_not_show_a_key_posted_as_a_form(
    client_for, alice, fathom, debug_pages, monkeypatch
):
    """A form body also lands in request.POST, which the debug page lists."""
    failing(monkeypatch, crypto, "encrypt")
    response = browser_client(client_for, alice).post(
        URL,
        f"api_key={ALICE_KEY}",
        content_type="application/x-www-form-urlencoded",
        **BROWSER,
    )
    assert_hidden(response, debug_pages, ALICE_KEY)


def test_a_debug_page_does_not_show_a_key_inside_the_fathom_client(
    client_for, alice, debug_pages, monkeypatch
):
    """The real client this time: its constructor fails while building the key's header."""
    failing(monkeypatch, fathom_client_module.httpx, "Client")
    response = browser_client(client_for, alice).post(
        URL, {"api_key": ALICE_KEY}, format="json", **BROWSER
    )
    assert_hidden(response, debug_pages, ALICE_KEY)


def test_a_debug_page_does_not_show_a_webhook_secret_being_stored(
    client_for, alice, fathom, debug_pages, monkeypatch
):
    accounts.fathom_account_set_key(user=alice, api_key=ALICE_KEY)
    failing(monkeypatch, crypto, "encrypt")
    response = browser_client(client_for, alice).put(
        f"{URL}/webhook", {"secret": SECRET}, format="json", **BROWSER
    )
    signing_key = accounts.decode_webhook_secret(SECRET)
    assert_hidden(response, debug_pages, SECRET, SECRET.removeprefix("whsec_"), repr(signing_key))


def test_a_debug_page_does_not_show_the_stored_key_at_a_sync(
    client_for, alice, debug_pages, monkeypatch
):
    checked_by = FakeFathom(ALICE_KEY, valid_keys={ALICE_KEY})
    accounts.fathom_account_set_key(user=alice, api_key=ALICE_KEY, client=checked_by)
    # Inside fathom_client_for(api_key): the key is decrypted by then, a local on the way.
    failing(monkeypatch, accounts, "RateLimiter")
    response = browser_client(client_for, alice).post("/api/meetings/sync", **BROWSER)
    assert_hidden(response, debug_pages, ALICE_KEY)
