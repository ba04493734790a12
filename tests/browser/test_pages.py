"""Signing in and out, the Fathom connection, and who may open the monitor."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from playwright.sync_api import expect

from queue_app import accounts
from queue_app.models import FathomAccount, Meeting
from queue_app.webhooks import sign
from tests.accounts.fakes import meeting_json
from tests.browser.conftest import PASSWORD, PHONE, screenshot, sign_in
from tests.webhooks.conftest import SECRET as WEBHOOK_SECRET

pytestmark = pytest.mark.django_db(transaction=True)


def test_sign_in_and_out(live_server_url, new_page, make_user):
    make_user("alice")
    page = new_page(viewport=PHONE)
    page.goto(f"{live_server_url}/queue")
    # Not signed in: the login page, which comes back to the queue afterwards.
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/queue$"))
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("enter a correct username and password")
    screenshot(page, "sign-in")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")  # the keyboard is enough
    expect(page).to_have_url(f"{live_server_url}/queue")
    expect(page.get_by_role("heading", name="Queue", exact=True)).to_be_visible()
    expect(page.get_by_text("Signed in as alice")).to_be_visible()
    expect(page.get_by_role("link", name="Monitor")).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    page.goto(f"{live_server_url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))


def test_the_monitor_is_for_staff_only(live_server_url, new_page, make_user):
    make_user("bob")
    page = new_page()
    page.goto(f"{live_server_url}/monitor")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/monitor$"))
    sign_in(page, live_server_url, "bob")
    response = page.goto(f"{live_server_url}/monitor")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    assert page.request.get(f"{live_server_url}/monitor/stats").status == 403


def test_connect_fathom_sync_and_auto_queue(live_server_url, sandbox, new_page, make_user):
    alice = make_user("alice")
    page = new_page()
    sign_in(page, live_server_url, "alice")
    expect(page.get_by_role("button", name="Sync from Fathom")).to_be_disabled()

    key = page.get_by_label("Fathom API key")
    key.fill("not-a-key-fathom-knows")
    page.get_by_role("button", name="Connect Fathom").click()
    expect(page.get_by_role("alert").filter(has_text="Fathom")).to_contain_text("refused")
    assert not FathomAccount.objects.filter(user=alice).exists()

    key.fill("sandbox-key-alice")
    page.get_by_role("button", name="Connect Fathom").click()
    expect(page.locator("#fathom-status")).to_contain_text("ending …lice")
    assert "sandbox-key-alice" not in page.content(), "the key is never shown again"

    page.get_by_role("button", name="Sync from Fathom").click()
    expect(page.locator("#sync-status")).to_contain_text(
        re.compile(r"Synced with Fathom: \d+ created")
    )
    count = Meeting.objects.filter(owner=alice).count()
    assert count > 0
    expect(page.locator(".meeting")).to_have_count(count)
    expect(
        page.locator(".meeting").first.get_by_role("button", name=re.compile("^Queue"))
    ).to_be_visible()

    auto = page.get_by_label("Queue new meetings automatically")
    expect(auto).not_to_be_checked()
    auto.check()
    expect(page.locator("#auto-queue-status")).to_contain_text("Saved: new meetings join the line")
    assert FathomAccount.objects.get(user=alice).auto_queue is True
    page.reload()
    expect(page.get_by_label("Queue new meetings automatically")).to_be_checked()
    page.get_by_label("Queue new meetings automatically").uncheck()
    expect(page.locator("#auto-queue-status")).to_contain_text("Saved: new meetings wait")
    assert FathomAccount.objects.get(user=alice).auto_queue is False
    screenshot(page, "meetings-connected")


def test_webhook_address_secret_and_disconnect(
    live_server_url, sandbox, connect_fathom, new_page, make_user, settings
):
    # The manual route (issue 12 registers the webhook when a key is connected; the
    # route stays for keys without webhook rights).
    settings.FATHOM_WEBHOOK_REGISTRATION = False
    alice = make_user("alice")
    connect_fathom(alice, "sandbox-key-alice")
    page = new_page()
    sign_in(page, live_server_url, "alice")

    page.get_by_text("Let Fathom announce new meetings (webhook)").click()
    status = page.locator("#webhook-status")
    expect(status).to_contain_text("No signing secret yet")
    url = page.get_by_label("In Fathom, add a webhook").input_value()
    assert url.startswith(f"{live_server_url}/webhooks/fathom?account=")

    secret_field = page.get_by_label("Paste the signing secret")
    secret_field.fill("not-a-signing-secret")
    page.get_by_role("button", name="Save the secret").click()
    expect(page.locator("#webhook-secret-form [role=alert]")).to_contain_text("whsec_")
    assert not FathomAccount.objects.get(user=alice).webhook_secret_encrypted

    secret_field.fill(WEBHOOK_SECRET)
    page.get_by_role("button", name="Save the secret").click()
    expect(status).to_contain_text("Saved: Fathom's deliveries are accepted")
    assert WEBHOOK_SECRET not in page.content()

    # The address the page gave works: a delivery signed with the saved secret imports.
    body = json.dumps(meeting_json(4321, title="Webhook-imported review")).encode()
    timestamp = int(time.time())
    signature = sign(
        secret=accounts.decode_webhook_secret(WEBHOOK_SECRET),
        webhook_id="msg_page_test",
        timestamp=timestamp,
        body=body,
    )
    answer = httpx.post(
        url,
        content=body,
        headers={
            "Content-Type": "application/json",
            "webhook-id": "msg_page_test",
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert Meeting.objects.filter(owner=alice, recording_id=4321).exists()

    meetings_before = Meeting.objects.filter(owner=alice).count()
    page.get_by_text("Disconnect Fathom", exact=True).first.click()  # the summary
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Disconnect Fathom").click()
    expect(page.locator("#fathom-status")).to_contain_text("Not connected")
    assert not FathomAccount.objects.filter(user=alice).exists()
    assert Meeting.objects.filter(owner=alice).count() == meetings_before
    answer = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code in (401, 404)  # the address is dead once disconnected
