"""Connecting a Fathom key registers its webhook in Fathom (POST /webhooks); disconnecting
deletes it; a refusal leaves the key connected and the manual route open. Against the
sandbox, which keeps the webhooks it was given."""

from __future__ import annotations

import pytest

from queue_app import accounts, crypto
from queue_app.integrations.fathom import FathomRejected
from queue_app.models import FathomAccount

from .conftest import ALICE_KEY, SANDBOX_ALICE_KEY

URL = "/api/credentials/fathom"


@pytest.fixture
def public(settings):
    settings.PUBLIC_BASE_URL = "https://queue.example.com"


def test_connecting_registers_the_webhook_and_keeps_its_secret_encrypted(
    client_for, alice, sandbox, public
):
    response = client_for(alice).post(URL, {"api_key": SANDBOX_ALICE_KEY}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["webhook_registered"] is True
    account = FathomAccount.objects.get(user=alice)
    (hook,) = sandbox.webhooks()
    assert hook["id"] == account.fathom_webhook_id
    assert hook["url"] == (
        f"https://queue.example.com/webhooks/fathom?account={account.webhook_token}"
    )
    assert hook["triggered_for"] == ["my_recordings", "my_shared_with_team_recordings"]
    assert (hook["include_summary"], hook["include_transcript"]) == (True, True)
    assert (hook["include_action_items"], hook["include_crm_matches"]) == (False, False)
    secret = crypto.decrypt(account.webhook_secret_encrypted)
    assert secret.startswith("whsec_") and secret not in account.webhook_secret_encrypted
    assert secret not in response.content.decode()
    shown = client_for(alice).get(f"{URL}/webhook").json()
    assert shown["registered"] is True and shown["secret_set"] is True


def test_a_team_trigger_refused_falls_back_to_own_recordings(client_for, alice, sandbox, public):
    sandbox.add_fault("status", match="/webhooks", method="POST", status=400)
    client_for(alice).post(URL, {"api_key": SANDBOX_ALICE_KEY}, format="json")
    (hook,) = sandbox.webhooks()
    assert hook["triggered_for"] == ["my_recordings"]


@pytest.mark.parametrize("status", [403, 503])
def test_a_refused_registration_keeps_the_key_and_the_manual_route(
    client_for, alice, sandbox, public, status
):
    sandbox.add_fault("status", match="/webhooks", method="POST", status=status, times=None)
    client = client_for(alice)

    response = client.post(URL, {"api_key": SANDBOX_ALICE_KEY}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["connected"] is True and body["webhook_registered"] is False
    assert "did not register the webhook" in body["webhook_error"]
    assert str(status) in body["webhook_error"] and "by hand" in body["webhook_error"]
    assert SANDBOX_ALICE_KEY not in body["webhook_error"]
    assert sandbox.webhooks() == []
    assert accounts.fathom_api_key_for(alice) == SANDBOX_ALICE_KEY
    # The manual route: the URL shown, the secret pasted back.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    stored = client.put(f"{URL}/webhook", {"secret": secret}, format="json").json()
    assert stored["secret_set"] is True and stored["registered"] is False
    assert stored["url"].endswith(f"?account={FathomAccount.objects.get().webhook_token}")


def test_disconnecting_deletes_the_webhook_in_fathom(client_for, alice, sandbox, public):
    client = client_for(alice)
    client.post(URL, {"api_key": SANDBOX_ALICE_KEY}, format="json")
    assert len(sandbox.webhooks()) == 1

    assert client.delete(URL).status_code == 204

    assert sandbox.webhooks() == []
    assert not FathomAccount.objects.exists()
    deletes = [r for r in sandbox.requests() if r["method"] == "DELETE"]
    assert [(r["path"].rsplit("/", 2)[-2], r["status"]) for r in deletes] == [("webhooks", 204)]


def test_disconnecting_while_fathom_is_down_still_forgets_the_key(
    client_for, alice, sandbox, public
):
    client = client_for(alice)
    client.post(URL, {"api_key": SANDBOX_ALICE_KEY}, format="json")
    sandbox.add_fault("status", match="/webhooks/*", method="DELETE", status=503)
    assert client.delete(URL).status_code == 204
    assert not FathomAccount.objects.exists()


def test_replacing_the_key_moves_the_webhook(client_for, alice, sandbox, public):
    client = client_for(alice)
    client.post(URL, {"api_key": SANDBOX_ALICE_KEY}, format="json")
    first = FathomAccount.objects.get().fathom_webhook_id
    client.post(URL, {"api_key": SANDBOX_ALICE_KEY}, format="json")
    (hook,) = sandbox.webhooks()
    assert hook["id"] == FathomAccount.objects.get().fathom_webhook_id != first


def test_registration_can_be_turned_off(client_for, alice, fathom, settings):
    settings.FATHOM_WEBHOOK_REGISTRATION = False
    client_for(alice).post(URL, {"api_key": ALICE_KEY}, format="json")
    assert fathom.made[0].webhooks_created == []
    assert FathomAccount.objects.get().webhook_secret_encrypted == ""


def test_a_refusal_with_the_fake_says_why(alice, fathom):
    client = fathom.client(ALICE_KEY)
    client.webhook_refusal = FathomRejected("Fathom denied access to webhooks (403)", status=403)
    account = accounts.fathom_account_set_key(user=alice, api_key=ALICE_KEY, client=client)
    assert "denied access to webhooks (403)" in account.webhook_error
    assert account.fathom_webhook_id == "" and account.webhook_secret_encrypted == ""
