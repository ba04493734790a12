"""The staff monitor on the real stack: daphne, a Celery worker and the Fathom sandbox."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from queue_app.models import EntryStatus, QueueEntry
from queue_app.selectors import queue_state
from queue_app.services import line, transfers
from tests.browser.conftest import screenshot, sign_in
from tests.processes import wait_until_idle
from tests.queue_helpers import fail_transfer

pytestmark = pytest.mark.django_db(transaction=True)

TRANSFER_TIMEOUT_MS = 60_000


def test_staff_pause_and_resume_from_the_monitor(
    live_server_url, celery_worker, connect_fathom, new_page, make_user, no_dispatch
):
    make_user("admin", is_staff=True)
    alice = make_user("alice")
    failed_one, running_one, done_one, waiting_one = list(
        connect_fathom(alice, "sandbox-key-alice").values()
    )[:4]

    # History for the monitor, made here (this process asks no worker for work): one failed,
    # one completed, one running on a worker.
    entry = line.entry_enqueue(meeting=failed_one)
    transfers.transfer_claim_next(worker="worker-3@host")
    fail_transfer(entry_id=entry.id, worker="worker-3@host", error="Fathom refused (403)")
    entry = line.entry_enqueue(meeting=done_one)
    transfers.transfer_claim_next(worker="worker-3@host")
    transfers.transfer_complete(
        entry_id=entry.id, worker="worker-3@host", result_url="http://x/share/1"
    )
    line.entry_enqueue(meeting=running_one)
    transfers.transfer_claim_next(worker="worker-7@host")

    monitor = new_page()
    sign_in(monitor, live_server_url, "admin", next_path="/monitor")
    expect(monitor.locator("#connection")).to_have_attribute("data-state", "live")
    expect(monitor.locator("#stat-completed")).to_have_text("1")
    expect(monitor.locator("#stat-failed")).to_have_text("1")
    failure = monitor.locator("#failures > li")
    expect(failure).to_contain_text(str(failed_one))
    expect(failure).to_contain_text("alice")
    expect(failure).to_contain_text("Fathom refused (403)")
    running_row = monitor.locator("#running > tr")
    expect(running_row).to_contain_text(str(running_one))
    expect(running_row).to_contain_text("worker-7@host")
    # Elapsed time since the transfer started, ticking (m:ss).
    elapsed = running_row.locator(".elapsed")
    expect(elapsed).to_have_text(re.compile(r"^\d+:\d\d$"))
    first = elapsed.text_content()
    expect(elapsed).not_to_have_text(first, timeout=3000)

    admin = monitor.get_by_role("link", name=re.compile("queue entries"))
    expect(admin).to_have_attribute("href", "/admin/queue_app/queueentry/")

    alice_page = new_page()
    sign_in(alice_page, live_server_url, "alice", next_path="/queue")
    banner = alice_page.locator("#paused-banner")
    expect(alice_page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(banner).to_be_hidden()

    # Staff pause: every page shows it, and a meeting queued now waits.
    monitor.get_by_role("button", name="Pause the queue").click()
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("The queue is paused")
    expect(monitor.get_by_role("button", name="Resume the queue")).to_be_visible()
    assert queue_state().paused

    meetings = alice_page.context.new_page()
    meetings.goto(f"{live_server_url}/")
    expect(meetings.locator("#paused-banner")).to_be_visible()
    row = meetings.locator(".meeting").filter(
        has=meetings.get_by_role("heading", name=str(waiting_one))
    )
    row.get_by_role("button", name=re.compile("^Queue")).click()
    expect(row).to_contain_text("In line: place 1")
    wait_until_idle()  # the dispatch that daphne asked for has run, and claimed nothing
    waiting = QueueEntry.objects.get(meeting=waiting_one, status=EntryStatus.QUEUED)
    mine = alice_page.locator("#line > li.mine")
    expect(mine).to_contain_text("Place 1")
    expect(monitor.locator("#line > tr")).to_contain_text(str(waiting_one))
    # Since when it waits: a time of day, and how long.
    expect(monitor.locator("#line > tr .waiting")).to_have_text(
        re.compile(r"^\d\d:\d\d.* \(under a minute\)$")
    )
    screenshot(alice_page, "queue-paused")
    screenshot(monitor, "monitor")

    # Resume: the worker takes it and transfers it from the sandbox; alice is told.
    monitor.get_by_role("button", name="Resume the queue").click()
    expect(banner).to_be_hidden()
    expect(monitor.get_by_role("button", name="Pause the queue")).to_be_visible()
    notice = alice_page.locator("#notices")
    expect(notice).to_contain_text(f"“{waiting_one}” is transferred.", timeout=TRANSFER_TIMEOUT_MS)
    expect(notice.get_by_role("link", name="Open the share link")).to_be_visible()
    expect(row.get_by_role("link", name="Open the share link")).to_be_visible()
    waiting.refresh_from_db()
    assert waiting.status == EntryStatus.COMPLETED and waiting.result_url
    expect(monitor.locator("#stat-completed")).to_have_text("2")
    expect(monitor.locator("#line > tr")).to_have_count(0)
