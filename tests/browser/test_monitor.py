"""The staff monitor on the real stack: daphne, a Celery worker and the Fathom sandbox."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from queue_app.models import EntryStatus, QueueEntry, TransferAttempt
from queue_app.retry_policy import Failure
from queue_app.selectors import queue_state
from queue_app.services import line, transfers
from tests.browser.conftest import Daphne, screenshot, sign_in
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
    # The worker's transfer is on the throughput chart, redrawn when it completed.
    expect(monitor.locator("#chart-throughput")).to_have_attribute("data-total", "2")


@pytest.fixture
def quiet_server(quiet_env):
    # Its own daphne, one per test (the database is emptied between tests, seq restarts),
    # asking no worker for work: what this test makes stays where it put it.
    daphne = Daphne(quiet_env, "daphne-monitor").start()
    yield daphne
    daphne.stop()


def painted_pixels(page, figure_id: str) -> int:
    """How many pixels of the chart's canvas are drawn in a series' colour (not the
    background, axes or grid, which are grey)."""
    return page.evaluate(
        """(id) => {
          const canvas = document.querySelector(`#${id} canvas`);
          const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
          let painted = 0;
          for (let i = 0; i < data.length; i += 4) {
            const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
            if (a > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 60) painted++;
          }
          return painted;
        }""",
        figure_id,
    )


def finish(entry, worker: str, *, kind: str | None = None) -> None:
    """Take `entry` (moved to the front) and end it as a worker would: completed, or failed
    for good with `kind`."""
    line.entry_move(entry_id=entry.pk, position="top")
    assert transfers.transfer_claim_next(worker=worker).pk == entry.pk
    if kind is None:
        transfers.transfer_complete(entry_id=entry.pk, worker=worker, bytes_moved=1000)
    else:
        failure = Failure(f"{kind}: refused", transient=False, kind=kind)
        transfers.transfer_retry_or_fail(entry_id=entry.pk, worker=worker, failure=failure)


def test_operator_console_charts_actions_filters_and_bulk(
    quiet_server, transactional_db, new_page, make_user, make_meeting, no_dispatch
):
    make_user("admin", is_staff=True)
    alice, bob = make_user("alice"), make_user("bob")
    history = [
        ("Board review", None),
        ("Sales sync", None),
        ("Design crit", "fathom_rejected"),
        ("Hiring loop", "fathom_rejected"),
    ]
    now = timezone.now()
    for n, (title, kind) in enumerate(history):
        entry = line.entry_enqueue(meeting=make_meeting(alice, title))
        finish(entry, "worker-1@h", kind=kind)
        # Spread over the hour, each after a longer wait in line, as a real hour would be.
        finished = now - timedelta(minutes=50 - 12 * n)
        started = finished - timedelta(seconds=40)
        TransferAttempt.objects.filter(entry=entry).update(started_at=started, finished_at=finished)
        QueueEntry.objects.filter(pk=entry.pk).update(
            created_at=started - timedelta(seconds=20 + 25 * n),
            started_at=started,
            finished_at=finished,
        )
    ops = line.entry_enqueue(meeting=make_meeting(bob, "Ops standup"))
    finish(ops, "worker-2@h", kind="upload_failed")
    running = line.entry_enqueue(meeting=make_meeting(alice, "All hands"))
    assert transfers.transfer_claim_next(worker="worker-2@h").pk == running.pk
    retro = line.entry_enqueue(meeting=make_meeting(alice, "Retro"))
    bobs = [line.entry_enqueue(meeting=make_meeting(bob, f"Bob's call {n}")) for n in (1, 2)]

    monitor = new_page()
    errors: list[str] = []  # script errors and CSP refusals (Chromium logs both)

    def console(message) -> None:
        if message.type == "error":
            errors.append(f"{message.text} ({message.location.get('url')})")

    monitor.on("console", console)
    monitor.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(monitor, quiet_server.base_url, "admin", next_path="/monitor")
    expect(monitor.locator("#connection")).to_have_attribute("data-state", "live")
    csp = monitor.context.request.get(f"{quiet_server.base_url}/monitor").headers
    assert "script-src 'self'" in csp["content-security-policy"]

    # The charts: drawn (uPlot from this site, under the CSP), from the attempt history.
    throughput, failures = monitor.locator("#chart-throughput"), monitor.locator("#chart-failures")
    expect(throughput).to_have_attribute("data-total", "2")
    expect(throughput).to_contain_text("2 completed in the last hour")
    expect(failures).to_contain_text("3 failed for good, 0 will retry")
    expect(monitor.locator("#chart-wait canvas")).to_have_count(1)
    assert painted_pixels(monitor, "chart-throughput") > 20
    assert painted_pixels(monitor, "chart-failures") > 20
    expect(monitor.locator("#chart-wait")).to_contain_text(
        "Longest mean wait in the last hour: 1 min 35 s"
    )
    assert painted_pixels(monitor, "chart-wait") > 5
    monitor.get_by_role("button", name="Last day").click()
    expect(monitor.locator("#charts-range")).to_contain_text("by the quarter hour")
    expect(throughput).to_contain_text("2 completed in the last day")
    assert painted_pixels(monitor, "chart-throughput") > 20
    monitor.get_by_role("button", name="Last hour").click()
    expect(throughput).to_contain_text("2 completed in the last hour")

    # Running: elapsed time and worker, and the attempt history a row expands to.
    running_row = monitor.locator("#running > tr")
    expect(running_row).to_contain_text("worker-2@h")
    expect(running_row.locator(".elapsed")).to_have_text(re.compile(r"^\d+:\d\d$"))

    # A row action with a note for the owner: bob's second call to the front of the line.
    places = monitor.locator("#line > tr")
    expect(places).to_have_count(3)
    monitor.get_by_role("button", name="Move “Bob's call 2”").click()
    dialog = monitor.get_by_role("dialog")
    expect(dialog).to_contain_text("Now at place 3")
    dialog.get_by_label("New place in line").fill("1")
    dialog.get_by_label("Note for the owner").fill("Moved up: the board needs it today.")
    with monitor.expect_request(lambda r: r.url.endswith(f"/api/queue/{bobs[1].id}/move")) as sent:
        dialog.get_by_role("button", name="Confirm").click()
    note = "Moved up: the board needs it today."
    assert sent.value.post_data_json == {"position": 1, "note": note}
    expect(dialog).to_be_hidden()
    expect(places.first).to_contain_text("Bob's call 2")  # the move's event, live
    expect(places.first.locator(".place")).to_have_text("1")
    screenshot(monitor, "monitor")
    assert QueueEntry.objects.get(pk=bobs[1].pk).order_key < retro.order_key

    # Filter: failed, of error kind fathom_rejected; then every one of them retried at once.
    monitor.get_by_label("State").select_option("failed")
    failed_rows = monitor.locator("#failed > tr")
    expect(failed_rows).to_have_count(3)
    monitor.get_by_label("Error kind").select_option("fathom_rejected")
    expect(failed_rows).to_have_count(2)
    count = monitor.locator("#filter-count")
    expect(count).to_have_text("2 failed with error kind fathom_rejected.")
    hiring = failed_rows.filter(has_text="Hiring loop")
    hiring.get_by_role("button", name="Attempt history of “Hiring loop”").click()
    expect(hiring.locator(".attempts > li")).to_have_text(
        [re.compile(r"Attempt 1: failed · worker-1@h .*fathom_rejected: fathom_rejected: refused")]
    )
    monitor.get_by_role("button", name="Retry all matching…").click()
    expect(dialog).to_contain_text("Retry 2 failed entries?")
    expect(dialog).to_contain_text("with error kind fathom_rejected")
    with monitor.expect_request(lambda r: r.url.endswith("/api/queue/retry")) as sent:
        dialog.get_by_role("button", name="Yes, retry 2").click()
    assert sent.value.post_data_json == {"matching": {"error_kind": "fathom_rejected"}}
    expect(monitor.locator("#notices")).to_contain_text("Retried 2 entries.")
    expect(failed_rows).to_have_count(0)
    expect(monitor.locator("#failed-empty")).to_be_visible()
    retried = QueueEntry.objects.filter(meeting__title__in=["Design crit", "Hiring loop"])
    assert {e.status for e in retried} == {EntryStatus.QUEUED}
    assert QueueEntry.objects.get(pk=ops.pk).status == EntryStatus.FAILED  # another kind

    # "Cancel all of this user's waiting entries": bob's, one change.
    monitor.get_by_label("State").select_option("waiting")
    monitor.get_by_label("Owner", exact=True).fill("bob")
    expect(places).to_have_count(2)
    expect(count).to_have_text("2 waiting of bob.")
    monitor.get_by_role("button", name="Cancel all matching…").click()
    expect(dialog).to_contain_text("Cancel 2 waiting entries?")
    dialog.get_by_label("Note for the owner").fill("Your calls were already moved by hand.")
    dialog.get_by_role("button", name="Yes, cancel 2").click()
    expect(places).to_have_count(0)
    expect(monitor.locator("#line-empty")).to_have_text("Nothing of bob is waiting.")
    assert {e.status for e in QueueEntry.objects.filter(pk__in=[b.pk for b in bobs])} == {
        EntryStatus.CANCELLED
    }
    monitor.get_by_label("Owner", exact=True).fill("")
    expect(places).to_have_count(3)  # retro and the two retried
    # The site has no favicon (Chromium asks for one): that is the only refusal allowed.
    assert [e for e in errors if not e.endswith("/favicon.ico)")] == []


def test_the_monitor_pages_through_a_long_line(
    quiet_server, transactional_db, new_page, make_user, make_meeting, no_dispatch
):
    make_user("admin", is_staff=True)
    alice = make_user("alice")
    meetings = [make_meeting(alice, f"Recording {n:02d}") for n in range(1, 56)]
    line.entries_enqueue(owner=alice, meeting_ids=[m.pk for m in meetings])

    monitor = new_page()
    sign_in(monitor, quiet_server.base_url, "admin", next_path="/monitor")
    places = monitor.locator("#line > tr")
    expect(places).to_have_count(50)
    expect(monitor.locator("#page-info")).to_have_text("Page 1 of 2")
    expect(monitor.get_by_role("button", name="Previous")).to_be_disabled()
    monitor.get_by_role("button", name="Next").click()
    expect(places).to_have_count(5)
    expect(places.locator(".place")).to_have_text(["51", "52", "53", "54", "55"])
    expect(places.first).to_contain_text("Recording 51")
    expect(monitor.get_by_role("button", name="Next")).to_be_disabled()

    # The page follows the line: two cancelled ahead, and page 2 holds 3.
    first, second = QueueEntry.objects.filter(status=EntryStatus.QUEUED).order_by("order_key")[:2]
    line.entries_cancel(entry_ids=[str(first.pk), str(second.pk)], owner=None)
    expect(places).to_have_count(3)
    expect(places.first.locator(".place")).to_have_text("51")
    expect(places.first).to_contain_text("Recording 53")
    monitor.get_by_role("button", name="Previous").click()
    expect(places).to_have_count(50)
