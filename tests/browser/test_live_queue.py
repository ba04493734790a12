"""The live queue as people see it: alice follows her transfer, bob sees only places.

The transfer is driven from the test (claim, progress, complete) on a daphne with no
dispatch of its own, so each step is seen on the pages before the next one happens.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from queue_app.broadcast import publish_progress
from queue_app.models import EntryStatus, QueueEntry
from queue_app.services import line, transfers
from tests.browser.conftest import PHONE, Daphne, screenshot, sign_in
from tests.queue_helpers import fail_transfer

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_TITLE = "Alice's confidential acquisition talks"
WORKER = "browser-test-worker"


@pytest.fixture
def server(quiet_env):
    # One per test: the database is emptied between tests, so seq starts again from 1, and
    # a daphne that lived on would take the new events for ones it has already delivered.
    daphne = Daphne(quiet_env, "daphne-browser").start()
    yield daphne
    daphne.stop()


def meeting_row(page, title: str):
    return page.locator(".meeting").filter(has=page.get_by_role("heading", name=title))


def assert_nothing_of_alice(page) -> None:
    """Neither bob's rendered text nor his DOM (scripts and data included) names her."""
    for text in (page.content(), page.locator("body").inner_text()):
        assert SECRET_TITLE not in text
        assert "alice" not in text.lower()


def test_alice_follows_her_transfer_while_bob_sees_the_line_move(
    server, new_page, make_user, make_meeting, no_dispatch
):
    alice, bob = make_user("alice"), make_user("bob")
    make_meeting(alice, SECRET_TITLE)
    bobs_entry = line.entry_enqueue(meeting=make_meeting(bob, "Bob's weekly sync"))

    bob_page = new_page()
    sign_in(bob_page, server.base_url, "bob", next_path="/queue")
    bobs_line = bob_page.locator("#line > li")
    expect(bob_page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(bobs_line).to_have_count(1)

    alice_page = new_page()
    sign_in(alice_page, server.base_url, "alice")
    expect(alice_page.get_by_role("heading", name="My meetings")).to_be_visible()
    row = meeting_row(alice_page, SECRET_TITLE)
    expect(row).to_contain_text("Not queued")
    alice_queue = alice_page.context.new_page()  # her queue page, open in another tab
    alice_queue.goto(f"{server.base_url}/queue")
    expect(alice_queue.locator("#connection")).to_have_attribute("data-state", "live")

    # She queues it: her place, without reloading; bob's line grows by an anonymous place.
    row.get_by_role("button", name=re.compile("^Queue")).click()
    expect(row).to_contain_text("In line: place 2")
    expect(row.get_by_role("button", name=re.compile("^Cancel"))).to_be_visible()
    expect(bobs_line).to_have_count(2)
    expect(bobs_line.nth(1)).to_contain_text("Place 2")
    expect(bobs_line.nth(1)).to_contain_text("Someone else's meeting")
    expect(bobs_line.nth(0)).to_contain_text("Bob's weekly sync")
    mine = alice_queue.locator("#line > li.mine")
    expect(mine).to_contain_text(SECRET_TITLE)
    expect(mine).to_contain_text("Place 2")
    # No transfer has finished yet: no estimate, and the page says so (docs/estimates.md).
    expect(mine).to_contain_text("no estimate yet")
    assert_nothing_of_alice(bob_page)

    # Bob's transfer starts: the line moves, alice is first, nobody's place is stale.
    assert transfers.transfer_claim_next(worker=WORKER).id == bobs_entry.id
    expect(row).to_contain_text("In line: place 1")
    expect(bobs_line).to_have_count(1)
    expect(bobs_line.nth(0)).to_contain_text("Place 1")
    expect(bob_page.locator("#running > li")).to_contain_text("Bob's weekly sync")
    expect(alice_queue.locator("#running > li")).to_contain_text("Another person's transfer")
    assert transfers.transfer_complete(entry_id=bobs_entry.id, worker=WORKER, result_url="")

    # Hers starts: a progress bar, moved by ProgressUpdate messages.
    entry = transfers.transfer_claim_next(worker=WORKER)
    assert entry is not None and entry.meeting.title == SECRET_TITLE
    bar = row.get_by_role("progressbar")
    expect(bar).to_be_visible()
    expect(row).to_contain_text("Transferring now")
    expect(bobs_line).to_have_count(0)
    expect(bob_page.locator("#running > li")).to_have_text("Another person's transfer")
    publish_progress(entry_id=entry.id, owner_id=alice.pk, stage="downloading", progress=0.5)
    expect(row).to_contain_text("Downloading from Fathom · 50%")
    expect(bar).to_have_js_property("value", 0.5)
    queue_bar = alice_queue.locator("#running > li.mine").get_by_role("progressbar")
    expect(queue_bar).to_have_js_property("value", 0.5)
    publish_progress(entry_id=entry.id, owner_id=alice.pk, stage="uploading", progress=0.8)
    expect(row).to_contain_text("Uploading to Loom · 80%")
    screenshot(alice_queue, "queue")
    screenshot(bob_page, "queue-other-user")
    assert_nothing_of_alice(bob_page)

    # Done: the share link, and a notice on her queue page.
    share_url = f"{server.base_url}/share/test-token"
    assert transfers.transfer_complete(entry_id=entry.id, worker=WORKER, result_url=share_url)
    link = row.get_by_role("link", name="Open the share link")
    expect(link).to_have_attribute("href", share_url)
    expect(row.get_by_role("progressbar")).to_have_count(0)
    notice = alice_queue.locator("#notices")
    expect(notice).to_contain_text(f"“{SECRET_TITLE}” is transferred.")
    expect(notice.get_by_role("link", name="Open the share link")).to_have_attribute(
        "href", share_url
    )
    expect(bob_page.locator("#running > li")).to_have_count(0)
    # Bob was told of his own transfer only.
    expect(bob_page.locator("#notices .notice")).to_have_count(1)
    expect(bob_page.locator("#notices")).to_contain_text("“Bob's weekly sync” is transferred.")
    assert_nothing_of_alice(bob_page)
    screenshot(alice_page, "meetings")


def test_a_failure_is_told_with_its_reason_and_can_be_retried(
    server, new_page, make_user, make_meeting, no_dispatch
):
    alice = make_user("alice")
    meeting = make_meeting(alice, "Roadmap review")
    entry = line.entry_enqueue(meeting=meeting)

    page = new_page(viewport=PHONE)
    sign_in(page, server.base_url, "alice")
    row = meeting_row(page, "Roadmap review")
    expect(row).to_contain_text("In line: place 1")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")

    assert transfers.transfer_claim_next(worker=WORKER).id == entry.id
    expect(row.get_by_role("progressbar")).to_be_visible()
    reason = "Fathom says the recording is gone (404)"
    assert fail_transfer(entry_id=entry.id, worker=WORKER, error=reason)
    expect(row).to_contain_text(f"Failed: {reason}.")
    expect(page.locator("#notices")).to_contain_text(f"“Roadmap review” failed: {reason}.")
    screenshot(page, "meetings-phone")

    # Retry puts it back in line; cancel takes it out; both follow without reloading.
    row.get_by_role("button", name=re.compile("^Retry")).click()
    expect(row).to_contain_text("In line: place 1")
    assert QueueEntry.objects.get(pk=entry.pk).status == EntryStatus.QUEUED
    row.get_by_role("button", name=re.compile("^Cancel")).click()
    expect(row).to_contain_text("Not queued")
    expect(row.get_by_role("button", name=re.compile("^Queue"))).to_be_focused()
    assert QueueEntry.objects.get(pk=entry.pk).status == EntryStatus.CANCELLED


def test_a_long_line_shows_its_head_your_entries_and_how_many_more_wait(
    server, new_page, make_user, make_meeting, no_dispatch, settings
):
    """60 of bob's waiting, then 2 of alice's: fair share puts her first one second in
    line, and staff move her other one to the bottom (62nd). Alice's page holds the head
    (20 places), her own entries and the count of the rest, not 62 rows, and follows the
    line as it moves."""
    alice, bob = make_user("alice"), make_user("bob")
    line.entries_enqueue(owner=bob, meeting_ids=[make_meeting(bob).pk for _ in range(60)])
    _, last = line.entries_enqueue(
        owner=alice,
        meeting_ids=[make_meeting(alice, "Alice's first").pk, make_meeting(alice).pk],
    ).entries
    line.entry_move(entry_id=last.pk, position="bottom")

    page = new_page()
    sign_in(page, server.base_url, "alice", next_path="/queue")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    rows = page.locator("#line > li")
    expect(rows).to_have_count(21)  # the 20 places of the head, and alice's 62nd
    expect(page.locator("#summary")).to_contain_text("62 waiting")
    expect(page.locator("#summary")).to_contain_text("41 more waiting beyond those shown")
    expect(page.locator("#summary")).to_contain_text("your 2 entries: places 2 and 62")
    expect(rows.filter(has_text="Alice's first")).to_contain_text("Place 2")

    # The head moves: a claim takes place 1; alice's entries move up without the rest.
    transfers.transfer_claim_next(worker=WORKER)
    expect(page.locator("#summary")).to_contain_text("your 2 entries: places 1 and 61")
    expect(page.locator("#summary")).to_contain_text("40 more waiting beyond those shown")
    expect(rows).to_have_count(21)
    screenshot(page, "queue-long-line")
