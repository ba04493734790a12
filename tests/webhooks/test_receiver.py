"""POST /webhooks/fathom: verified deliveries import (and maybe queue) once; others nothing."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from queue_app import accounts
from queue_app.importing import deliveries_prune
from queue_app.models import EntryStatus, Meeting, QueueEntry, QueueEvent, WebhookDelivery
from queue_app.services import line
from queue_app.webhooks import sign
from tests.accounts.fakes import meeting_json
from tests.helpers import assert_error
from tests.webhooks.conftest import SECRET, deliver

pytestmark = pytest.mark.django_db


def database_rows() -> dict[str, list]:
    """Everything a delivery may write: equal before and after means it wrote nothing."""
    return {
        "meetings": list(Meeting.objects.order_by("pk").values()),
        "entries": list(QueueEntry.objects.order_by("pk").values()),
        "events": list(QueueEvent.objects.order_by("seq").values()),
        "deliveries": list(WebhookDelivery.objects.order_by("pk").values()),
    }


def test_a_valid_delivery_imports_the_meeting_for_the_accounts_owner(account, alice):
    response = deliver(account, meeting_json(555, title="Board review"))

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "imported", "created": True, "queued": False}
    meeting = Meeting.objects.get()
    assert (meeting.owner, meeting.recording_id, meeting.title) == (alice, 555, "Board review")
    assert meeting.share_url == "https://fathom.video/share/555"
    assert meeting.duration_seconds == 59 * 60 + 43
    assert meeting.raw["recorded_by"]["email"] == "alice@example.com"
    assert not QueueEntry.objects.exists()  # auto-queue is off


def test_the_same_webhook_id_again_changes_nothing(account):
    assert deliver(account, meeting_json(555), webhook_id="msg_once").status_code == 200
    before = database_rows()

    # A retry carries the same id with a fresh timestamp; here even the title differs.
    again = deliver(account, meeting_json(555, title="Edited"), webhook_id="msg_once")

    assert again.status_code == 200
    assert again.json() == {"status": "duplicate"}
    assert database_rows() == before
    assert Meeting.objects.get().title == "Recording 555"


def test_a_new_webhook_id_for_a_known_meeting_updates_it_without_a_duplicate(account):
    deliver(account, meeting_json(555), webhook_id="msg_a")

    response = deliver(account, meeting_json(555, title="Renamed"), webhook_id="msg_b")

    assert response.json() == {"status": "imported", "created": False, "queued": False}
    assert list(Meeting.objects.values_list("recording_id", "title")) == [(555, "Renamed")]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param({"secret": "whsec_" + "QUJD" * 8}, id="signed-with-another-secret"),
        pytest.param({"signature": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}, id="forged"),
        pytest.param({"signature": ""}, id="unsigned"),
        pytest.param({"token": "no-such-account"}, id="unknown-account"),
        pytest.param({"token": ""}, id="no-account"),
    ],
)
def test_a_bad_signature_gets_401_and_creates_nothing(account, tamper):
    before = database_rows()

    response = deliver(account, meeting_json(555), **tamper)

    assert response.status_code == 401
    assert response.json()["code"] in {"invalid_signature", "missing_headers"}
    assert database_rows() == before


def test_a_body_changed_after_signing_gets_401(account):
    signed = sign(
        secret=accounts.decode_webhook_secret(SECRET),
        webhook_id="msg_x",
        timestamp=int(time.time()),
        body=b'{"recording_id": 1}',
    )

    response = deliver(account, meeting_json(2), webhook_id="msg_x", signature=signed)

    assert_error(response, 401, "invalid_signature")
    assert not Meeting.objects.exists()


def test_a_timestamp_ten_minutes_old_gets_401_and_creates_nothing(account):
    before = database_rows()

    response = deliver(account, meeting_json(555), timestamp=int(time.time()) - 600)

    assert_error(response, 401, "stale_timestamp")
    assert database_rows() == before


def test_a_signed_but_malformed_body_gets_400_and_creates_nothing(account):
    before = database_rows()

    not_json = deliver(account, b"{not json", webhook_id="msg_1")
    no_recording = deliver(account, {"title": "no recording id"}, webhook_id="msg_2")
    wrong_type = deliver(account, meeting_json(7, title=["a", "list"]), webhook_id="msg_3")

    assert_error(not_json, 400, "malformed_body")
    assert_error(no_recording, 400, "malformed_body")
    assert_error(wrong_type, 400, "malformed_body")
    assert database_rows() == before


def test_with_auto_queue_on_the_meeting_is_queued_and_announced(account, alice):
    accounts.fathom_account_set_auto_queue(user=alice, auto_queue=True)

    response = deliver(account, meeting_json(555, title="Sprint demo"))

    assert response.json() == {"status": "imported", "created": True, "queued": True}
    entry = QueueEntry.objects.get()
    assert (entry.owner, entry.status, entry.meeting.recording_id) == (
        alice,
        EntryStatus.QUEUED,
        555,
    )
    event = QueueEvent.objects.get()
    assert event.update_type == "meeting_added"
    assert event.affected_user == alice
    assert event.payload[0]["title"] == "Sprint demo"


def test_auto_queue_does_not_queue_a_meeting_again_once_transferred(account, alice):
    accounts.fathom_account_set_auto_queue(user=alice, auto_queue=True)
    deliver(account, meeting_json(555), webhook_id="msg_a")
    line.entry_cancel(entry_id=QueueEntry.objects.get().pk)  # e.g. finished or cancelled

    response = deliver(account, meeting_json(555), webhook_id="msg_b")

    assert response.json()["queued"] is False
    assert QueueEntry.objects.count() == 1


def test_a_delivery_for_a_meeting_already_in_line_is_fine(account, alice):
    accounts.fathom_account_set_auto_queue(user=alice, auto_queue=True)
    deliver(account, meeting_json(555), webhook_id="msg_a")
    events = QueueEvent.objects.count()

    response = deliver(account, meeting_json(555), webhook_id="msg_b")

    assert response.status_code == 200
    assert QueueEntry.objects.count() == 1
    assert QueueEvent.objects.count() == events


def test_deliveries_are_routed_to_the_account_they_name(account, alice, bob):
    from tests.accounts.fakes import FakeFathom

    bob_key = "fk_live_bobs_key_000000000"
    accounts.fathom_account_set_key(
        user=bob, api_key=bob_key, client=FakeFathom(bob_key, valid_keys={bob_key})
    )
    bob_secret = "whsec_" + "Qk9C" * 8
    bob_account = accounts.fathom_account_set_webhook_secret(user=bob, secret=bob_secret)

    # Bob's URL with Alice's secret: not Bob's sender.
    assert deliver(bob_account, meeting_json(1)).status_code == 401
    assert deliver(bob_account, meeting_json(1), secret=bob_secret).status_code == 200
    # The same webhook-id in two accounts are two deliveries.
    assert deliver(account, meeting_json(1)).status_code == 200

    assert sorted(Meeting.objects.values_list("owner__username", "recording_id")) == [
        ("alice", 1),
        ("bob", 1),
    ]


def test_an_account_without_a_webhook_secret_accepts_nothing(alice):
    from tests.accounts.fakes import FakeFathom

    key = "fk_live_no_webhook_1234567"
    account = accounts.fathom_account_set_key(
        user=alice, api_key=key, client=FakeFathom(key, valid_keys={key})
    )

    assert_error(deliver(account, meeting_json(1)), 401, "invalid_signature")
    assert not Meeting.objects.exists()


def test_other_methods_get_405_json():
    response = Client().get("/webhooks/fathom")
    assert_error(response, 405, "method_not_allowed")


def test_seen_ids_older_than_a_week_are_pruned(account):
    deliver(account, meeting_json(1), webhook_id="msg_old")
    deliver(account, meeting_json(2), webhook_id="msg_new")
    WebhookDelivery.objects.filter(webhook_id="msg_old").update(
        received_at=timezone.now() - timedelta(days=8)
    )

    assert deliveries_prune() == 1
    assert list(WebhookDelivery.objects.values_list("webhook_id", flat=True)) == ["msg_new"]
