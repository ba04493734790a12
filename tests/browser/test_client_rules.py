"""live.js applies events by the rules of queue_app/client_state.py: a viewer's snapshot plus
the events they were sent equals a fresh snapshot, for the owner, someone else, staff and an
anonymous viewer, each with its window on the line."""

from __future__ import annotations

import pytest

from queue_app import events, selectors
from queue_app.client_state import comparable
from queue_app.services import line, transfers
from tests.processes import ROOT
from tests.queue_helpers import fail_transfer

pytestmark = pytest.mark.django_db(transaction=True)

LIVE_JS = ROOT / "queue_app" / "static" / "queue_app" / "live.js"
APPLY = """([snapshot, events]) => {
  let state = Fathomloom.stateFromSnapshot(snapshot);
  for (const event of events) state = Fathomloom.applyEvent(state, event);
  return state;
}"""


def test_live_js_reproduces_a_fresh_snapshot_for_every_viewer(
    new_page, make_user, make_meeting, no_dispatch, monkeypatch
):
    # Windows of a few places (protocol version 2), so that entries enter and leave them
    # and Alice's stand outside another viewer's.
    monkeypatch.setattr(events, "HEAD_PLACES", 2)
    monkeypatch.setattr(events, "STAFF_HEAD_PLACES", 3)
    alice, bob, staff = make_user("alice"), make_user("bob"), make_user("admin", is_staff=True)
    meetings = [make_meeting(owner) for owner in (alice, bob, alice, bob, alice, alice)]
    first = line.entry_enqueue(meeting=meetings[0])
    viewers = (alice, bob, staff, None)
    before = {user: selectors.queue_snapshot_for(user) for user in viewers}

    # Every kind of event: joins, a move, a cancel and its retry, a pause, starts, a
    # completion, a failure and its retry, and a clear.
    entries = [first] + [line.entry_enqueue(meeting=m) for m in meetings[1:]]
    line.entry_move(entry_id=entries[4].id, position="top")
    line.entry_cancel(entry_id=entries[2].id)
    line.entry_retry(entry_id=entries[2].id)
    line.queue_pause()
    line.queue_resume()
    done = transfers.transfer_claim_next(worker="w")
    transfers.transfer_complete(entry_id=done.id, worker="w", result_url="http://x/share/1")
    failed = transfers.transfer_claim_next(worker="w")
    fail_transfer(entry_id=failed.id, worker="w", error="gone")
    line.queue_pause()
    line.queue_clear()
    line.queue_resume()
    # End with a line whose places shifted (an entry ahead left it), or stale positions
    # would go unnoticed.
    for meeting in meetings:
        if meeting.pk != failed.meeting_id:
            line.entry_enqueue(meeting=meeting)
    line.entry_retry(entry_id=failed.id)
    transfers.transfer_claim_next(worker="w")  # stays running; the rest move up

    page = new_page()
    page.set_content("<!doctype html><title>rules</title>")
    page.add_script_tag(path=str(LIVE_JS))
    for user, snapshot in before.items():
        sent = selectors.events_for(user=user, after=snapshot["seq"], limit=500)
        assert len(sent) >= 12
        state = page.evaluate(APPLY, [snapshot, sent])
        fresh = selectors.queue_snapshot_for(user)
        # A line longer than the windows, with some of it in each viewer's window.
        assert fresh["waiting"] > events.HEAD_PLACES
        assert sum(e["position"] is not None for e in fresh["queue"]) >= 2
        assert comparable(state) == comparable(fresh), user
