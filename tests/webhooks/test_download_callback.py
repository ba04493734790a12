"""POST /webhooks/fathom/download: a finished download Fathom pushes to a waiting transfer.
Verified, bounded and idempotent like the webhook receiver; a refusal changes nothing."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis
from django.conf import settings
from django.test import Client

from queue_app import download_callbacks
from queue_app.models import Meeting, WebhookDelivery
from tests.helpers import assert_error
from tests.webhooks.conftest import SECRET, deliver

pytestmark = pytest.mark.django_db

URL = "/webhooks/fathom/download"


def completed(download_id: str, recording_id: int = 1001) -> dict:
    return {
        "download_id": download_id,
        "recording_id": recording_id,
        "status": "completed",
        "video": {
            "url": "https://downloads.fathom.example/v.mp4?sig=1",
            "content_type": "video/mp4",
            "file_size_bytes": 1234,
            "expires_at": "2030-01-01T00:00:00Z",
        },
    }


def post(account, payload, *, webhook_id="msg_cb1", secret=SECRET, signature=None, body=None):
    return deliver(
        account,
        payload if body is None else body,
        webhook_id=webhook_id,
        secret=secret,
        signature=signature,
        path=URL,
    )


@pytest.fixture
def download_id():
    did = f"dl_{uuid.uuid4().hex[:16]}"
    url = settings.REDIS_URL  # a test may point the setting elsewhere meanwhile
    yield did
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{download_callbacks.MAILBOX_PREFIX}:*:{did}"):
        client.delete(key)
    client.close()


@pytest.fixture
def recording(account, alice):
    return Meeting.objects.create(owner=alice, recording_id=1001, title="Weekly sync")


def waiting(account, download_id: str, timeout: float = 0.2) -> bytes | None:
    return download_callbacks.callback_wait(
        account_id=account.pk, download_id=download_id, timeout=timeout
    )


def test_a_signed_callback_reaches_the_waiting_transfer_once(account, recording, download_id):
    first = post(account, completed(download_id))
    again = post(account, completed(download_id))  # Fathom's retry: the same webhook-id

    assert first.status_code == 200 and first.json() == {"status": "received"}
    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    body = waiting(account, download_id)
    assert json.loads(body)["download_id"] == download_id
    assert waiting(account, download_id) is None  # one callback, one wake-up


def test_a_callback_that_came_first_waits_for_its_transfer(account, recording, download_id):
    post(account, completed(download_id))
    time.sleep(0.3)
    assert waiting(account, download_id) is not None


@pytest.mark.parametrize(
    "forge",
    [
        {"secret": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"},
        {"signature": "v1,bm90IGEgc2lnbmF0dXJl"},
        {"signature": ""},
    ],
)
def test_a_forged_callback_is_refused_and_changes_nothing(account, recording, download_id, forge):
    response = post(account, completed(download_id), **forge)
    assert response.status_code in (400, 401)
    assert not WebhookDelivery.objects.exists()
    assert waiting(account, download_id) is None


def test_an_oversized_callback_is_refused_unread_and_changes_nothing(
    account, recording, download_id
):
    padded = completed(download_id)
    padded["padding"] = "x" * download_callbacks.MAX_CALLBACK_BYTES
    response = post(account, padded)
    assert_error(response, 413, "too_large")
    assert not WebhookDelivery.objects.exists()
    assert waiting(account, download_id) is None


def test_a_callback_about_someone_elses_recording_is_refused(account, recording, download_id):
    response = post(account, completed(download_id, recording_id=2001))
    assert_error(response, 400, "malformed_body")
    assert "not of one of your recordings" in response.json()["detail"]
    assert waiting(account, download_id) is None


def test_a_malformed_download_is_refused(account, recording, download_id):
    broken = completed(download_id)
    del broken["video"]  # "completed" with no file
    assert_error(post(account, broken), 400, "malformed_body")
    assert_error(post(account, {}, body=b"[[[[", webhook_id="msg_cb2"), 400, "malformed_body")
    assert not WebhookDelivery.objects.exists()


def test_an_unknown_account_gets_the_answer_of_a_bad_signature(account, recording, download_id):
    response = Client().post(f"{URL}?account=nobody", data=b"{}", content_type="application/json")
    assert_error(response, 401, "invalid_signature")
    assert Client().get(f"{URL}?account={account.webhook_token}").status_code == 405


def test_the_callback_url_needs_the_setting_and_a_secret(account, settings):
    settings.PUBLIC_BASE_URL = "https://queue.example.com/"
    settings.FATHOM_DOWNLOAD_CALLBACKS = False
    assert download_callbacks.callback_url_for(account) is None
    settings.FATHOM_DOWNLOAD_CALLBACKS = True
    assert download_callbacks.callback_url_for(account) == (
        f"https://queue.example.com{URL}?account={account.webhook_token}"
    )
    account.webhook_secret_encrypted = ""
    assert download_callbacks.callback_url_for(account) is None


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("https://queue.example.com", True),
        ("http://127.0.0.1:8000", False),
        ("http://localhost:8000", False),
        ("http://testserver", False),
        ("http://10.0.0.5", False),
        ("http://[::1]:8000", False),
        ("https://8.8.8.8", True),
    ],
)
def test_callbacks_are_on_by_default_only_for_a_public_base_url(url, public):
    from fathomloom.settings.base import _reachable_from_outside

    assert _reachable_from_outside(url) is public


def test_an_unreachable_mailbox_means_polling_not_a_failed_transfer(settings, account):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    started = time.monotonic()
    assert waiting(account, "dl_unreachable", timeout=30) is None
    assert time.monotonic() - started < 10


def test_redis_down_is_503_and_keeps_nothing_so_fathoms_retry_is_taken(
    settings, account, recording, download_id
):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = post(account, completed(download_id))
    assert response.status_code == 503
    assert not WebhookDelivery.objects.exists()
