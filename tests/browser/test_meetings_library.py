"""My meetings with a whole library: search, filter and page on the server (the URL keeps
them), select rows with the mouse and the keyboard, queue the selection and then every
meeting matching, and watch the entries arrive on the Queue page live.

The daphne has no dispatch of its own, so what is queued stays in the line to be seen.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from queue_app.models import EntryStatus, Meeting, QueueEntry
from queue_app.services import line, transfers
from tests.browser.conftest import PHONE, Daphne, screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)
DASH = "\N{EN DASH}"


@pytest.fixture
def server(quiet_env):
    daphne = Daphne(quiet_env, "daphne-library").start()
    yield daphne
    daphne.stop()


def make_library(owner, count: int = 60) -> list[Meeting]:
    """`count` meetings, one a day back from 30 November; every third is a "Sales call"."""
    start = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    Meeting.objects.bulk_create(
        Meeting(
            owner=owner,
            recording_id=n,
            title=f"Sales call {n}" if n % 3 == 0 else f"Team meeting {n}",
            recording_start_time=start - timedelta(days=count - n),
            duration_seconds=1800 + 60 * n,
        )
        for n in range(1, count + 1)
    )
    return list(Meeting.objects.filter(owner=owner))  # newest first


def rows(page):
    return page.locator("#meetings > .meeting")


def checkbox(page, title: str):
    return page.get_by_role("checkbox", name=f"Select {title}", exact=True)


def test_search_select_and_queue_a_library_then_watch_the_line(
    server, new_page, make_user, no_dispatch
):
    alice, bob = make_user("alice"), make_user("bob")
    library = make_library(alice)
    by_title = {str(m): m for m in library}
    make_library(bob, 3)
    # Two of her sales calls are in line already (one of them behind bob's meeting).
    bobs = line.entry_enqueue(meeting=Meeting.objects.filter(owner=bob).first())
    line.entry_enqueue(meeting=by_title["Sales call 57"])
    line.entry_enqueue(meeting=by_title["Sales call 30"])

    page = new_page()
    sign_in(page, server.base_url, "alice")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    # 60 meetings: 25 compact rows, not a 9,000 px page.
    expect(rows(page)).to_have_count(25)
    expect(page.locator("#library-count")).to_have_text(f"Meetings 1{DASH}25 of 60")
    assert page.evaluate("document.documentElement.scrollHeight") < 3500

    queue_page = page.context.new_page()  # her Queue page, open in another tab
    queue_page.goto(f"{server.base_url}/queue")
    expect(queue_page.locator("#connection")).to_have_attribute("data-state", "live")
    mine = queue_page.locator("#line > li.mine")
    expect(mine).to_have_count(2)

    # Search: the server finds 20 sales calls; the URL says so, reload keeps it.
    page.get_by_label("Title").fill("sales")
    page.get_by_label("Title").press("Enter")
    expect(page).to_have_url(re.compile(r"/\?search=sales$"))
    expect(page.locator("#library-count")).to_have_text("20 meetings matching")
    expect(rows(page)).to_have_count(20)
    for title in rows(page).locator("h3").all_text_contents():
        assert title.startswith("Sales call")
    expect(rows(page).filter(has_text="Sales call 57")).to_contain_text("In line: place 2")

    # A state filter and the dates narrow it, in pages of their own; back undoes it.
    page.get_by_label("State").select_option("waiting")
    page.get_by_role("button", name="Find").click()
    expect(page).to_have_url(re.compile(r"\?search=sales&state=waiting$"))
    expect(rows(page).locator("h3")).to_have_text(["Sales call 57", "Sales call 30"])
    page.go_back()
    expect(page).to_have_url(re.compile(r"/\?search=sales$"))
    expect(rows(page)).to_have_count(20)

    # Pages: the whole library over three pages; back and reload land where they were.
    page.get_by_role("link", name="Clear filters").click()
    page.get_by_role("link", name="Next page").click()
    expect(page).to_have_url(re.compile(r"/\?page=2$"))
    expect(page.locator("#library-count")).to_have_text(f"Meetings 26{DASH}50 of 60")
    expect(rows(page).first.locator("h3")).to_have_text("Team meeting 35")
    page.reload()
    expect(rows(page).first.locator("h3")).to_have_text("Team meeting 35")
    page.go_back()
    expect(rows(page).first.locator("h3")).to_have_text("Sales call 60")

    # Select: a click, a shift-click for the range between, the keyboard for one more.
    page.goto(f"{server.base_url}/?search=sales")
    checkbox(page, "Sales call 60").click()
    checkbox(page, "Sales call 51").click(modifiers=["Shift"])  # 60, 57, 54, 51
    checkbox(page, "Sales call 48").focus()
    page.keyboard.press("Space")
    expect(page.locator("#selection-count")).to_have_text("5 selected")
    queue_selected = page.get_by_role("button", name="Queue 5 selected")
    expect(queue_selected).to_be_enabled()
    queue_selected.click()

    # One request: four joined the line, the one already in it is refused and says why.
    result = page.locator("#bulk-result")
    expect(result).to_contain_text("Queued 4 meetings.")
    expect(result).to_contain_text("1 meeting already in the line: “Sales call 57”.")
    expect(rows(page).filter(has_text="Sales call 57")).to_contain_text(
        "Not queued: This meeting is already in the queue."
    )
    expect(rows(page).filter(has_text="Sales call 60")).to_contain_text(
        re.compile(r"In line: place \d")
    )
    expect(page.locator("#selection-count")).to_have_text("None selected")
    expect(mine).to_have_count(6)
    assert QueueEntry.objects.filter(owner=alice, status=EntryStatus.QUEUED).count() == 6

    # Every one matching: the whole page, then Gmail's offer of the rest. All 20 sales
    # calls fit on one page: nothing more to offer.
    page.get_by_label("Select all on this page").check()
    expect(page.locator("#selection-count")).to_have_text("20 selected")
    banner = page.locator("#select-all-banner")
    expect(banner).to_be_hidden()
    page.get_by_label("Select all on this page").uncheck()
    expect(page.locator("#selection-count")).to_have_text("None selected")

    page.goto(f"{server.base_url}/?page=1")
    page.get_by_label("Select all on this page").check()
    expect(banner).to_contain_text("All 25 on this page are selected.")
    banner.get_by_role("button", name="Select all 60").click()
    expect(banner).to_contain_text("All 60 meetings are selected.")
    expect(page.locator("#selection-count")).to_have_text("All 60 meetings selected")
    screenshot(page, "meetings-library")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Queue all 60").first.click()
    expect(result).to_contain_text("Queued 54 meetings.")
    expect(result).to_contain_text("6 meetings already in the line:")
    expect(result).to_contain_text("on other pages")

    # The Queue page took every one of them live: hers in full, bob's as a place.
    expect(mine).to_have_count(60)
    expect(queue_page.locator("#line > li:not(.mine)")).to_have_count(1)
    assert QueueEntry.objects.filter(owner=alice, status=EntryStatus.QUEUED).count() == 60

    # The rows follow the line live: bob's transfer starts, everyone moves up one place.
    place = rows(page).filter(has_text="Sales call 60").locator(".status-text")
    before = int(re.search(r"place (\d+)", place.text_content())[1])
    assert transfers.transfer_claim_next(worker="w").id == bobs.id
    expect(place).to_contain_text(f"place {before - 1}")


def test_the_library_at_phone_width_by_keyboard(server, new_page, make_user, no_dispatch):
    alice = make_user("alice")
    make_library(alice, 30)
    page = new_page(viewport=PHONE)
    sign_in(page, server.base_url, "alice")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    # Nothing wider than the phone, nothing of the filters past their card's edge.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    overflow = page.evaluate(
        """() => {
          const card = document.getElementById("library-filters").getBoundingClientRect();
          return [...document.querySelectorAll("#library-filters input, #library-filters select")]
            .filter((field) => field.getBoundingClientRect().right > card.right)
            .map((field) => field.name);
        }"""
    )
    assert overflow == []

    page.get_by_label("Title").focus()
    page.keyboard.type("team")
    page.keyboard.press("Enter")
    expect(page.locator("#library-count")).to_have_text("20 meetings matching")
    checkbox(page, "Team meeting 29").focus()
    page.keyboard.press("Space")
    expect(page.locator("#selection-count")).to_have_text("1 selected")
    # Tab goes through the row's Queue button to the next row's checkbox.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(checkbox(page, "Team meeting 28")).to_be_focused()
    checkbox(page, "Team meeting 25").focus()
    page.keyboard.press("Shift+Space")  # the range: 29, 28, 26, 25
    expect(page.locator("#selection-count")).to_have_text("4 selected")
    queue_selected = page.get_by_role("button", name="Queue 4 selected")
    queue_selected.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#bulk-result")).to_contain_text("Queued 4 meetings.")
    expect(rows(page).filter(has_text="Team meeting 29")).to_contain_text("In line: place 1")
    expect(rows(page).filter(has_text="Team meeting 25")).to_contain_text("In line: place 4")
    expect(rows(page).filter(has_text="Team meeting 23")).to_contain_text("Not queued")
    screenshot(page, "meetings-library-phone")
