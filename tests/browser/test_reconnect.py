"""daphne goes away and comes back while alice's queue page is open."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from queue_app.selectors import queue_state
from queue_app.services import line, transfers
from tests.browser.conftest import Daphne, screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

# daphne closes with 1012 when it stops, so the page retries every 2 s at most; the rest is
# daphne's start-up on a busy machine.
RECONNECT_TIMEOUT_MS = 75_000


@pytest.fixture
def server(quiet_env):
    daphne = Daphne(quiet_env, "daphne-restart").start()
    yield daphne
    daphne.stop()


def line_of(page) -> list[str]:
    """The line as drawn: one "place · title" per entry, checking no entry is drawn twice."""
    keys = page.locator("#line > li, #running > li").evaluate_all(
        "nodes => nodes.map(n => n.dataset.key)"
    )
    assert len(keys) == len(set(keys)), f"an entry is drawn twice: {keys}"
    return page.locator("#line > li").evaluate_all(
        "nodes => nodes.map(n => n.querySelector('.place').textContent + ' · ' +"
        " n.querySelector('.entry-title').textContent)"
    )


def test_the_page_reconnects_resumes_and_takes_a_reset_snapshot(
    server, new_page, make_user, make_meeting, no_dispatch
):
    alice = make_user("alice")
    first, second, third = (make_meeting(alice, f"Meeting {n}") for n in ("one", "two", "three"))
    entry_one = line.entry_enqueue(meeting=first)
    line.entry_enqueue(meeting=second)

    page = new_page()
    sign_in(page, server.base_url, "alice", next_path="/queue")
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-state", "live")
    expect(page.locator("#line > li")).to_have_count(2)

    assert page.evaluate("window.fathomloomClient.maxDelay") == 30_000
    # A socket counts as in use once it got a message or was open a second (live.js): a
    # resume with nothing missed gets no message.
    page.wait_for_timeout(1200)

    # daphne stops: the page says it is reconnecting; meanwhile the line changes.
    server.stop()
    expect(connection).to_have_attribute("data-state", "reconnecting")
    expect(connection).to_contain_text("Reconnecting")
    # daphne closed the socket with 1012 (service restart) as it stopped: the page retries
    # at once and quickly (docs/protocol.md, "Reconnecting"), not on the 1 s..30 s backoff.
    assert page.evaluate("window.fathomloomClient.maxDelay") == 2_000
    screenshot(page, "queue-reconnecting")
    line.entry_enqueue(meeting=third)
    line.entry_cancel(entry_id=entry_one.id)

    # Back on the same port: the page resumes from its last seq and shows the line as it is.
    server.start()
    expect(connection).to_have_attribute("data-state", "live", timeout=RECONNECT_TIMEOUT_MS)
    # "Live" comes with the socket; the replay lands just after: wait for the line itself
    # (the old line also had two entries, so a count alone could pass on stale state).
    expect(page.locator("#line > li .entry-title")).to_have_text(["Meeting two", "Meeting three"])
    assert line_of(page) == ["Place 1 · Meeting two", "Place 2 · Meeting three"]
    # The server answered: the next drop starts from the usual backoff again.
    assert page.evaluate("[window.fathomloomClient.delay, window.fathomloomClient.maxDelay]") == [
        1000,
        30_000,
    ]

    # Again, but the events it missed are pruned: the server sends a reset snapshot.
    server.stop()
    expect(connection).to_have_attribute("data-state", "reconnecting")
    running = transfers.transfer_claim_next(worker="browser-test-worker")
    assert running is not None and running.meeting_id == second.pk
    line.entry_retry(entry_id=entry_one.id)
    assert line.events_prune(older_than=timedelta(0)) > 0
    server.start()
    expect(connection).to_have_attribute("data-state", "live", timeout=RECONNECT_TIMEOUT_MS)
    expect(page.locator("#running > li")).to_contain_text("Meeting two")
    expect(page.locator("#line > li .entry-title")).to_have_text(["Meeting three", "Meeting one"])
    assert line_of(page) == ["Place 1 · Meeting three", "Place 2 · Meeting one"]
    assert page.evaluate("window.fathomloomClient.state.seq") == queue_state().last_seq

    # And it is live again: the next change shows once, at once.
    line.entry_cancel(entry_id=entry_one.id)
    expect(page.locator("#line > li")).to_have_count(1)
    assert line_of(page) == ["Place 1 · Meeting three"]
