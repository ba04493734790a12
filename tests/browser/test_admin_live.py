"""The admin's queue list follows the live queue: once the queue changes it says the list
is stale and offers a refresh (real daphne, Chromium)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from queue_app.services import line
from tests.browser.conftest import Daphne, sign_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def quiet_server(quiet_env):
    daphne = Daphne(quiet_env, "daphne-admin-live").start()
    yield daphne
    daphne.stop()


def test_the_admin_list_says_when_it_is_stale_and_refreshes(
    quiet_server, new_page, make_user, make_meeting, no_dispatch
):
    make_user("admin", is_staff=True)
    alice = make_user("alice")
    line.entry_enqueue(meeting=make_meeting(alice, "Weekly planning"))

    page = new_page()
    sign_in(page, quiet_server.base_url, "admin", next_path="/admin/queue_app/queueentry/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    live = page.locator("#queue-live")
    expect(live).to_have_text("Following the live queue: this list is current.")
    stale = page.locator("#queue-stale")
    expect(stale).to_be_hidden()

    # Someone queues a meeting and cancels another: the list says so, and does not redraw
    # under staff's hands.
    added = line.entry_enqueue(meeting=make_meeting(alice, "Customer call"))
    expect(stale).to_be_visible()
    expect(stale).to_contain_text("changed since this list was loaded (1 change)")
    line.entry_cancel(entry_id=added.pk)
    expect(stale).to_contain_text("(2 changes)")
    expect(live).to_be_hidden()
    expect(rows).to_have_count(1)

    line.entry_enqueue(meeting=make_meeting(alice, "Quarterly review"))
    page.get_by_role("button", name="Refresh the list").click()
    expect(page.locator("#result_list")).to_contain_text("Quarterly review")
    expect(page.locator("#result_list")).to_contain_text("Customer call")  # cancelled, listed
    expect(stale).to_be_hidden()
    expect(live).to_have_text("Following the live queue: this list is current.")
