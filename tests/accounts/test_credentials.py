"""Connecting a Fathom key over the API: checked with Fathom first, shown as four characters."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from queue_app import accounts, crypto
from queue_app.integrations.fathom import FathomError, FathomUnavailable
from queue_app.models import FathomAccount
from tests.accounts.conftest import ALICE_KEY, SANDBOX_ALICE_KEY, meeting_list_requests
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/credentials/fathom"


def test_a_key_fathom_accepts_is_stored_encrypted_and_shown_as_its_last_four(
    client_for, alice, fathom
):
    client = client_for(alice)

    response = client.post(URL, {"api_key": ALICE_KEY}, format="json")

    assert response.status_code == 200, response.content
    assert response.json() == {
        "connected": True,
        "last4": "…" + ALICE_KEY[-4:],
        "auto_queue": False,
        "webhook_registered": True,
        "webhook_error": None,
    }
    assert [made.key_checks for made in fathom.made] == [1]  # asked Fathom once
    account = FathomAccount.objects.get(user=alice)
    assert ALICE_KEY not in account.api_key_encrypted
    assert crypto.decrypt(account.api_key_encrypted) == ALICE_KEY
    assert accounts.fathom_api_key_for(alice) == ALICE_KEY
    assert accounts.fathom_api_key_for(alice.pk) == ALICE_KEY
    assert client.get(URL).json() == {
        "connected": True,
        "last4": "…" + ALICE_KEY[-4:],
        "auto_queue": False,
        "webhook_registered": True,
        "webhook_error": None,
    }


def test_a_key_fathom_refuses_is_not_stored(client_for, alice, fathom):
    response = client_for(alice).post(
        URL, {"api_key": "fk_live_not_a_real_key_0000"}, format="json"
    )

    assert_error(response, 400, "fathom_key_rejected")
    assert not FathomAccount.objects.exists()
    assert accounts.fathom_api_key_for(alice) is None
    assert client_for(alice).get(URL).json() == {
        "connected": False,
        "last4": None,
        "auto_queue": False,
        "webhook_registered": False,
        "webhook_error": None,
    }


def test_a_refused_replacement_keeps_the_key_that_was_connected(client_for, alice, fathom):
    client = client_for(alice)
    client.post(URL, {"api_key": ALICE_KEY}, format="json")

    response = client.post(URL, {"api_key": "fk_live_revoked_key_99999"}, format="json")

    assert_error(response, 400, "fathom_key_rejected")
    assert accounts.fathom_api_key_for(alice) == ALICE_KEY


def test_fathom_unreachable_is_503_and_stores_nothing(client_for, alice, fathom):
    fathom.fail = FathomUnavailable("Fathom timed out after 30 s.", retry_after=7)

    response = client_for(alice).post(URL, {"api_key": ALICE_KEY}, format="json")

    assert_error(response, 503, "fathom_unavailable")
    assert response["Retry-After"] == "7"
    assert not FathomAccount.objects.exists()


def test_an_error_message_that_quotes_the_key_is_redacted(client_for, alice, fathom):
    # The client promises reasons without the key; if one ever slipped, it must not reach
    # the user, the logs or the response.
    fathom.fail = FathomError(f"bad header X-Api-Key: {ALICE_KEY}", status=400)

    response = client_for(alice).post(URL, {"api_key": ALICE_KEY}, format="json")

    body = assert_error(response, 502, "fathom_bad_response")
    assert ALICE_KEY not in response.content.decode()
    assert "[redacted]" in body["detail"]


@pytest.mark.parametrize(
    "body",
    [{}, {"api_key": ""}, {"api_key": "short"}, {"api_key": 12345678901}, {"api_key": "x" * 600}],
)
def test_bad_input_is_400_invalid_without_asking_fathom(client_for, alice, fathom, body):
    response = client_for(alice).post(URL, body, format="json")

    assert_error(response, 400, "invalid")
    assert fathom.made == []
    assert not FathomAccount.objects.exists()


def test_auto_queue_is_set_with_patch(client_for, alice, fathom):
    client = client_for(alice)
    assert_error(
        client.patch(URL, {"auto_queue": True}, format="json"), 400, "fathom_not_connected"
    )
    client.post(URL, {"api_key": ALICE_KEY}, format="json")

    response = client.patch(URL, {"auto_queue": True}, format="json")

    assert response.status_code == 200
    assert response.json()["auto_queue"] is True
    assert FathomAccount.objects.get(user=alice).auto_queue is True
    assert_error(client.patch(URL, {"auto_queue": "maybe"}, format="json"), 400, "invalid")


def test_delete_disconnects(client_for, alice, bob, fathom):
    client_for(alice).post(URL, {"api_key": ALICE_KEY}, format="json")
    client_for(bob).delete(URL)  # someone else's disconnect touches only theirs
    assert accounts.fathom_api_key_for(alice) == ALICE_KEY

    response = client_for(alice).delete(URL)

    assert response.status_code == 204
    assert accounts.fathom_api_key_for(alice) is None
    assert client_for(alice).get(URL).json()["connected"] is False
    assert client_for(alice).delete(URL).status_code == 204


def test_each_user_sees_only_their_own_connection(client_for, alice, bob, fathom):
    client_for(alice).post(URL, {"api_key": ALICE_KEY}, format="json")

    assert client_for(bob).get(URL).json()["connected"] is False


def test_anonymous_gets_401():
    for method in ("get", "post", "patch", "delete"):
        response = getattr(APIClient(), method)(URL, {}, format="json")
        assert_error(response, 401, "not_authenticated")


def test_the_webhook_url_names_the_account_and_the_secret_is_stored_encrypted(
    client_for, alice, fathom, settings
):
    # The manual route: a key whose webhook is not registered automatically.
    settings.FATHOM_WEBHOOK_REGISTRATION = False
    client = client_for(alice)
    assert_error(client.get(f"{URL}/webhook"), 400, "fathom_not_connected")
    client.post(URL, {"api_key": ALICE_KEY}, format="json")
    token = FathomAccount.objects.get(user=alice).webhook_token

    shown = client.get(f"{URL}/webhook").json()
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    stored = client.put(f"{URL}/webhook", {"secret": secret}, format="json")

    assert shown == {
        "url": f"http://testserver/webhooks/fathom?account={token}",
        "secret_set": False,
        "registered": False,
        "error": None,
    }
    assert stored.status_code == 200 and stored.json()["secret_set"] is True
    assert secret not in stored.content.decode()
    account = FathomAccount.objects.get(user=alice)
    assert secret not in account.webhook_secret_encrypted
    assert crypto.decrypt(account.webhook_secret_encrypted) == secret
    bad = client.put(f"{URL}/webhook", {"secret": "whsec_not base64!"}, format="json")
    assert_error(bad, 400, "invalid_webhook_secret")


# --- against the Fathom sandbox --------------------------------------------------------------


def test_the_sandbox_accepts_its_key_and_refuses_others(client_for, alice, bob, sandbox):
    accepted = client_for(alice).post(URL, {"api_key": SANDBOX_ALICE_KEY}, format="json")
    refused = client_for(bob).post(URL, {"api_key": "sandbox-key-mallory"}, format="json")

    assert accepted.json()["connected"] is True and accepted.json()["last4"] == "…lice"
    assert_error(refused, 400, "fathom_key_rejected")
    assert accounts.fathom_api_key_for(alice) == SANDBOX_ALICE_KEY
    assert accounts.fathom_api_key_for(bob) is None
    checks = meeting_list_requests(sandbox)
    assert [(r["has_api_key"], r["status"]) for r in checks] == [(True, 200), (True, 401)]


@pytest.mark.parametrize("fault", [{"fault": "status", "status": 502}, {"fault": "reset"}])
def test_fathom_down_while_checking_is_503_and_stores_nothing(client_for, alice, sandbox, fault):
    sandbox.add_fault(fault.pop("fault"), match="/meetings", **fault)

    response = client_for(alice).post(URL, {"api_key": SANDBOX_ALICE_KEY}, format="json")

    assert_error(response, 503, "fathom_unavailable")
    assert not FathomAccount.objects.exists()


def test_key_checks_are_throttled_per_user(client_for, alice, bob, fathom):
    client = client_for(alice)
    for _ in range(10):
        client.post(URL, {"api_key": "fk_live_guess_000000"}, format="json")

    throttled = client.post(URL, {"api_key": ALICE_KEY}, format="json")

    assert_error(throttled, 429, "throttled")
    assert len(fathom.made) == 10  # the eleventh never reached Fathom
    assert client.get(URL).status_code == 200  # reading is not throttled
    assert client_for(bob).post(URL, {"api_key": ALICE_KEY}, format="json").status_code == 200
