"""What a waiting user sees (issue 15), in Chromium: alice (the owner), bob (another user)
and staff; at phone width and by keyboard.

Transfers are driven from the test (claim, complete, fail) on a daphne with no dispatch of
its own, so each step is on the pages before the next one happens.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from queue_app.integrations.uploaders import get_uploader
from queue_app.models import Activity, EntryStatus, QueueEntry, TransferAttempt
from queue_app.services import line, transfers
from tests.browser.conftest import PHONE, Daphne, screenshot, sign_in
from tests.processes import ROOT
from tests.queue_helpers import fail_transfer, wait_to_retry

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "browser-test-worker"


@pytest.fixture
def server(quiet_env):
    daphne = Daphne(quiet_env, "daphne-waiting").start()
    yield daphne
    daphne.stop()


def live(page):
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def finish(entry_id, result_url: str = "", *, seconds: float = 20.0) -> None:
    """Complete a claimed transfer as if it took `seconds` (the estimates learn from it)."""
    TransferAttempt.objects.filter(entry_id=entry_id, finished_at__isnull=True).update(
        started_at=timezone.now() - timedelta(seconds=seconds)
    )
    assert transfers.transfer_complete(entry_id=entry_id, worker=WORKER, result_url=result_url)


def test_the_history_stays_and_staff_say_why(
    server, new_page, make_user, make_meeting, no_dispatch
):
    alice, bob = make_user("alice"), make_user("bob")
    staff_user = make_user("admin", is_staff=True)
    shipped = line.entry_enqueue(meeting=make_meeting(alice, "Quarterly review"))
    broken = line.entry_enqueue(meeting=make_meeting(alice, "Design crit"))
    transfers.transfer_claim_next(worker=WORKER)
    finish(shipped.pk, f"{server.base_url}/share/abc")
    transfers.transfer_claim_next(worker=WORKER)
    fail_transfer(entry_id=broken.pk, worker=WORKER, error="Fathom says the file is gone")
    waiting = line.entry_enqueue(meeting=make_meeting(alice, "Hiring sync"))
    line.entry_enqueue(meeting=make_meeting(bob, "Bob's standup"))

    page = new_page(viewport=PHONE)
    sign_in(page, server.base_url, "alice", next_path="/queue")
    live(page)
    history = page.locator("#activity-list")
    # Survives a reload: from the stored history, not from notices.
    page.reload()
    live(page)
    expect(page.get_by_role("heading", name="Done and failed")).to_be_visible()
    expect(history.locator("li")).to_have_count(2)
    expect(history.locator("li").nth(0)).to_contain_text("“Design crit” failed: Fathom says")
    expect(history.locator("li").nth(1)).to_contain_text("“Quarterly review” is transferred.")
    link = history.get_by_role("link", name="Open the share link of “Quarterly review”")
    expect(link).to_have_attribute("href", f"{server.base_url}/share/abc")
    expect(page.locator("#summary")).to_contain_text("your entry: place 1")

    # Staff cancel her waiting entry with a note (the service the API, the admin and the
    # monitor call): she hears why, live, and it joins her history.
    line.entry_cancel(entry_id=waiting.pk, note="Recording has no audio", actor=staff_user)
    notices = page.locator("#notices")
    expect(notices).to_contain_text(
        "Staff cancelled “Hiring sync”. Staff's note: Recording has no audio"
    )
    expect(history.locator("li").nth(0)).to_contain_text("Staff cancelled “Hiring sync”.")
    expect(history.locator("li").nth(0)).to_contain_text("Staff's note: Recording has no audio")
    screenshot(page, "queue-history-phone")

    # Retry from the history, by keyboard.
    retry = history.get_by_role("button", name="Retry “Design crit”")
    retry.focus()
    page.keyboard.press("Enter")
    expect(history.get_by_role("button", name="Retry “Design crit”")).to_have_count(0)
    expect(page.locator("#line > li.mine")).to_contain_text("Design crit")
    assert QueueEntry.objects.get(pk=broken.pk).status == EntryStatus.QUEUED

    # My meetings lists all of it, the move and the retry included.
    page.goto(f"{server.base_url}/")
    activity = page.locator("#activity-list")
    expect(activity).to_contain_text("You put “Design crit” back in line.")
    expect(activity).to_contain_text("Staff cancelled “Hiring sync”.")
    # The meeting itself says why it is no longer queued.
    hiring = page.locator(".meeting", has=page.get_by_role("heading", name="Hiring sync"))
    expect(hiring.locator(".meeting-why")).to_have_text(
        "Cancelled by staff. Their note: Recording has no audio"
    )

    # Bob sees none of it.
    bob_page = new_page()
    sign_in(bob_page, server.base_url, "bob", next_path="/queue")
    live(bob_page)
    expect(bob_page.locator("#activity-empty")).to_be_visible()
    body = bob_page.content()
    assert "Recording has no audio" not in body and "Design crit" not in body
    assert Activity.objects.filter(user=bob).count() == 0


def test_a_failure_notice_offers_retry(server, new_page, make_user, make_meeting, no_dispatch):
    alice = make_user("alice")
    entry = line.entry_enqueue(meeting=make_meeting(alice, "Board prep"))
    page = new_page()
    sign_in(page, server.base_url, "alice", next_path="/queue")
    live(page)

    transfers.transfer_claim_next(worker=WORKER)
    fail_transfer(entry_id=entry.pk, worker=WORKER, error="Loom refused the upload")

    notice = page.locator("#notices .notice")
    expect(notice).to_contain_text("“Board prep” failed: Loom refused the upload.")
    expect(notice.get_by_role("button", name="Dismiss")).to_be_visible()
    notice.get_by_role("button", name="Retry “Board prep”").click()
    expect(page.locator("#notices .notice")).to_have_count(0)
    expect(page.locator("#line > li.mine")).to_contain_text("Board prep")


def test_waiting_times_count_down_and_say_why_there_are_none(
    server, new_page, make_user, make_meeting, no_dispatch
):
    alice = make_user("alice")
    make_user("admin", is_staff=True)
    # History: three transfers of about 20 s each.
    for n in range(3):
        done = line.entry_enqueue(meeting=make_meeting(alice, f"Old {n}"))
        transfers.transfer_claim_next(worker=WORKER)
        finish(done.pk, seconds=20)
    running = line.entry_enqueue(meeting=make_meeting(alice, "Running one"))
    flaky = line.entry_enqueue(meeting=make_meeting(alice, "Flaky one"))
    for title in ("First", "Second", "Third"):
        line.entry_enqueue(meeting=make_meeting(alice, title))
    assert transfers.transfer_claim_next(worker=WORKER).pk == running.pk
    assert transfers.transfer_claim_next(worker=WORKER).pk == flaky.pk
    wait_to_retry(entry_id=flaky.pk, worker=WORKER, error="Fathom is busy", delay_seconds=90)

    page = new_page()
    sign_in(page, server.base_url, "alice", next_path="/queue")
    live(page)
    expect(page.locator("#summary")).to_contain_text("your 3 entries: places 1-3")
    running_row = page.locator("#running > li", has_text="Running one")
    expect(running_row).to_contain_text(re.compile(r"running for \d+ s"))
    expect(running_row).to_contain_text(re.compile(r"done in \d+ s"))
    retry_row = page.locator("#running > li", has_text="Flaky one")
    expect(retry_row).to_contain_text("attempt 1 failed: Fathom is busy")
    expect(retry_row).to_contain_text(re.compile(r"next try in 1 min \d\d s"))
    expect(retry_row.get_by_role("progressbar")).to_be_hidden()
    first = page.locator("#line > li", has_text="First")
    expect(first).to_contain_text(re.compile(r"done in \d+ s"))
    # It ticks between events.
    shown = first.locator(".entry-meta").text_content()
    expect(first.locator(".entry-meta")).not_to_have_text(shown, timeout=4000)
    screenshot(page, "queue-estimates")

    # Paused: no estimate for the line, and the page says why.
    line.queue_pause(note="Loom is down for maintenance")
    expect(page.locator("#paused-banner")).to_be_visible()
    expect(page.locator("#paused-banner")).to_contain_text(
        "Staff's note: Loom is down for maintenance"
    )
    expect(first).to_contain_text("paused: no estimate until staff resume the queue")
    expect(running_row).to_contain_text(re.compile(r"done in \d+ s"))
    line.queue_resume()
    expect(first).to_contain_text(re.compile(r"done in \d+ s"))
    expect(page.locator("#pause-note")).to_have_text("")


def test_stopping_a_running_transfer_asks_first_by_keyboard(
    server, new_page, make_user, make_meeting, no_dispatch
):
    alice = make_user("alice")
    entry = line.entry_enqueue(meeting=make_meeting(alice, "Long all-hands"))
    transfers.transfer_claim_next(worker=WORKER)
    page = new_page(viewport=PHONE)
    sign_in(page, server.base_url, "alice", next_path="/queue")
    live(page)
    cancel = page.get_by_role("button", name="Cancel “Long all-hands”")

    cancel.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Stop the transfer of “Long all-hands”?")
    expect(dialog).to_be_visible()
    keep = dialog.get_by_role("button", name="Keep transferring")
    expect(keep).to_be_focused()
    screenshot(page, "queue-confirm-phone")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(cancel).to_be_focused()
    assert QueueEntry.objects.get(pk=entry.pk).status == EntryStatus.RUNNING

    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Stop the transfer")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#running > li")).to_have_count(0)
    assert QueueEntry.objects.get(pk=entry.pk).status == EntryStatus.CANCELLED


def test_transferring_again_asks_first(server, new_page, make_user, make_meeting, no_dispatch):
    alice = make_user("alice")
    meeting = make_meeting(alice, "Customer call")
    entry = line.entry_enqueue(meeting=meeting)
    transfers.transfer_claim_next(worker=WORKER)
    finish(entry.pk, "http://example.invalid/share/1")
    page = new_page()
    sign_in(page, server.base_url, "alice")
    live(page)
    row = page.locator(".meeting", has=page.get_by_role("heading", name="Customer call"))

    row.get_by_role("button", name=re.compile("^Transfer again")).click()
    dialog = page.get_by_role("dialog", name="Transfer “Customer call” again?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Don't transfer").click()
    expect(dialog).to_be_hidden()
    assert not QueueEntry.objects.filter(meeting=meeting, status=EntryStatus.QUEUED).exists()

    row.get_by_role("button", name=re.compile("^Transfer again")).click()
    dialog.get_by_role("button", name="Transfer again").click()
    expect(row).to_contain_text("In line: place 1")
    assert QueueEntry.objects.filter(meeting=meeting, status=EntryStatus.QUEUED).exists()


def test_the_site_has_a_favicon(server, new_page, make_user):
    make_user("alice")
    page = new_page()
    sign_in(page, server.base_url, "alice")
    href = page.locator("link[rel=icon]").get_attribute("href")
    response = page.request.get(f"{server.base_url}{href}")
    assert response.status == 200
    assert response.headers["content-type"].startswith("image/")


def test_the_share_page_as_owner_other_user_and_stranger(
    server, new_page, make_user, make_meeting, no_dispatch, settings
):
    """The share link opens a page: the player, what Fathom knows, the transcript that
    follows playback; the owner closes it to signed-in users, and a stranger must sign in."""
    alice, _ = make_user("alice"), make_user("bob")
    meeting = make_meeting(alice, "Launch retro")
    meeting.summary = "## Summary\n\nWe launch on Monday.\n\n- Write the notes\n"
    meeting.duration_seconds = 1800
    meeting.raw = {
        "recorded_by": {"name": "Alice Example"},
        "transcript": [
            {"speaker": {"display_name": "Alice"}, "text": "Hello all.", "timestamp": "00:00:00"},
            {"speaker": {"display_name": "Bob"}, "text": "Dates next.", "timestamp": "00:00:01"},
        ],
    }
    meeting.save()
    # The file the local uploader keeps, where the server (same MEDIA_ROOT) serves it.
    video = ROOT / "fathom_sandbox" / "media" / "recording-1.mp4"
    settings.MEDIA_ROOT = server.env["MEDIA_ROOT"]
    result = get_uploader().upload(video, title=str(meeting), description="")
    share_url = server.base_url + "/share/" + result.share_url.rsplit("/", 1)[1]
    entry = line.entry_enqueue(meeting=meeting)
    transfers.transfer_claim_next(worker=WORKER)
    finish(entry.pk, share_url)

    stranger = new_page(viewport=PHONE)
    stranger.goto(share_url)
    expect(stranger.get_by_role("heading", name="Launch retro", level=1)).to_be_visible()
    expect(stranger.locator("#share-facts")).to_contain_text("30 min")
    expect(stranger.locator("#share-facts")).to_contain_text("by Alice Example")
    expect(stranger.get_by_role("heading", name="Summary")).to_be_visible()
    expect(stranger.locator(".share-summary")).to_contain_text("We launch on Monday.")
    expect(
        stranger.get_by_role("link", name="Download the recording of “Launch retro”")
    ).to_be_visible()
    expect(stranger.get_by_text("Who can open this page")).to_have_count(0)
    lines = stranger.locator("#transcript > li")
    expect(lines).to_have_count(2)
    # The transcript follows playback: playing from the second line's time marks it.
    stranger.get_by_role("button", name="Play from 0:01").click()
    expect(lines.nth(1)).to_have_attribute("aria-current", "true")
    expect(lines.nth(0)).not_to_have_attribute("aria-current", "true")
    assert stranger.locator("meta[property='og:title']").get_attribute("content") == "Launch retro"
    screenshot(stranger, "share-phone")

    # The owner closes the link to signed-in users, by keyboard.
    owner = new_page()
    sign_in(owner, server.base_url, "alice")
    owner.goto(share_url)
    owner.get_by_label("Signed-in users only").focus()
    owner.keyboard.press("Space")
    expect(owner.locator("#access-status")).to_have_text("Saved: only signed-in users can open it.")
    screenshot(owner, "share")
    meeting.refresh_from_db()
    assert meeting.share_access == "signed_in"

    stranger.goto(share_url)
    expect(stranger.get_by_label("Username")).to_be_visible()  # the sign-in page
    other = new_page(viewport=PHONE)
    sign_in(other, server.base_url, "bob")
    other.goto(share_url)
    expect(other.get_by_role("heading", name="Launch retro", level=1)).to_be_visible()
    expect(other.get_by_text("Who can open this page")).to_have_count(0)


def test_staff_cancel_with_a_note_in_the_admin_and_the_monitor_fits_a_phone(
    server, new_page, make_user, make_meeting, no_dispatch
):
    alice = make_user("alice")
    make_user("admin", is_staff=True)
    running = line.entry_enqueue(meeting=make_meeting(alice, "A meeting with a long title " * 3))
    transfers.transfer_claim_next(worker="a-worker-with-a-long-name@host-1234567890")
    waiting = line.entry_enqueue(meeting=make_meeting(alice, "Interview loop"))
    for n in range(3):
        line.entry_enqueue(meeting=make_meeting(alice, f"Another waiting meeting {n}"))

    mine = new_page(viewport=PHONE)
    sign_in(mine, server.base_url, "alice", next_path="/queue")
    live(mine)

    staff = new_page(viewport=PHONE)
    sign_in(staff, server.base_url, "admin", next_path="/monitor")
    live(staff)
    expect(staff.locator("#running > tr")).to_have_count(1)
    expect(staff.locator("#line > tr")).to_have_count(4)
    # Nothing wider than the phone: the tables stack into labelled rows.
    width = staff.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    expect(staff.locator("#running > tr td").nth(1)).to_be_visible()
    screenshot(staff, "monitor-phone")

    staff.goto(f"{server.base_url}/admin/queue_app/queueentry/{waiting.pk}/change/")
    staff.get_by_label("Note to the owner").first.fill("Candidate withdrew")
    staff.get_by_role("button", name="Cancel this entry").click()
    expect(staff.locator(".messagelist")).to_contain_text("Cancelled")

    expect(mine.locator("#notices")).to_contain_text(
        "Staff cancelled “Interview loop”. Staff's note: Candidate withdrew"
    )
    expect(mine.locator("#activity-list li").first).to_contain_text("Candidate withdrew")
    assert QueueEntry.objects.get(pk=running.pk).status == EntryStatus.RUNNING


def test_my_meetings_pages_through_older_activity(
    server, new_page, make_user, make_meeting, no_dispatch
):
    alice = make_user("alice")
    for n in range(25):
        entry = line.entry_enqueue(meeting=make_meeting(alice, f"M{n}"))
        line.entry_cancel(entry_id=entry.pk, actor=alice)
    page = new_page(viewport=PHONE)
    sign_in(page, server.base_url, "alice")
    live(page)
    items = page.locator("#activity-list > li")
    expect(items).to_have_count(20)
    expect(items.first).to_contain_text("You cancelled “M24”.")

    older = page.get_by_role("button", name="Show older")
    older.focus()
    page.keyboard.press("Enter")
    expect(items).to_have_count(25)
    expect(items.last).to_contain_text("You cancelled “M0”.")
    expect(older).to_be_hidden()
