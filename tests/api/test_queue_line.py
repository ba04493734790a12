"""A socket holds a window on the line (protocol version 2); the rest of the line is paged
through GET /api/queue/line, redacted like everything else."""

from __future__ import annotations

import pytest

from queue_app import events, selectors
from queue_app.services import line
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def long_line(alice, bob, make_meeting, settings, monkeypatch):
    """Seven places (three of Bob's at the back), and windows of two places (three for
    staff) so that the line reaches past them."""
    settings.QUEUE_ORDERING = "fifo"
    monkeypatch.setattr(events, "HEAD_PLACES", 2)
    monkeypatch.setattr(events, "STAFF_HEAD_PLACES", 3)
    owners = [alice] * 4 + [bob] * 3
    return [str(line.entry_enqueue(meeting=make_meeting(owner)).pk) for owner in owners]


def test_a_window_holds_the_head_and_your_own_and_says_how_many_wait(
    client_for, bob, staff, long_line
):
    snapshot = client_for(bob).get("/api/queue").json()
    assert (snapshot["version"], snapshot["waiting"], snapshot["head_places"]) == (2, 7, 2)
    # The first two places (Alice's, anonymous), then Bob's own three at 5, 6 and 7.
    assert [(e["id"], e["position"], e["mine"]) for e in snapshot["queue"]] == [
        (long_line[0], 1, False),
        (long_line[1], 2, False),
        (long_line[4], 5, True),
        (long_line[5], 6, True),
        (long_line[6], 7, True),
    ]
    assert "title" not in snapshot["queue"][0]
    staff_snapshot = client_for(staff).get("/api/queue").json()
    assert [e["position"] for e in staff_snapshot["queue"]] == [1, 2, 3]


def test_staff_page_past_their_window(client_for, staff, long_line):
    api = client_for(staff)
    page = api.get("/api/queue/line", {"start": 4, "limit": 2}).json()
    assert page["waiting"] == 7 and page["start"] == 4
    assert [(e["id"], e["position"]) for e in page["results"]] == [
        (long_line[3], 4),
        (long_line[4], 5),
    ]
    assert all("title" in e for e in page["results"])
    assert page["next"].endswith("/api/queue/line?start=6&limit=2")
    last = api.get("/api/queue/line", {"start": 6, "limit": 2}).json()
    assert [e["position"] for e in last["results"]] == [6, 7]
    assert last["next"] is None


def test_others_entries_in_a_page_are_anonymous(client_for, alice, long_line):
    page = client_for(alice).get("/api/queue/line", {"start": 4, "limit": 10}).json()
    assert [(e["position"], e["mine"]) for e in page["results"]] == [
        (4, True),
        (5, False),
        (6, False),
        (7, False),
    ]
    assert set(page["results"][1]) == {"id", "position", "status", "mine"}


@pytest.mark.parametrize("query", [{"start": 0}, {"start": "x"}, {"limit": 501}, {"limit": 0}])
def test_a_bad_page_is_refused(client_for, alice, long_line, query):
    assert_error(client_for(alice).get("/api/queue/line", query), 400, "invalid")


def test_own_positions_are_the_same_counted_one_by_one_or_read_together(
    client_for, bob, long_line, monkeypatch
):
    one_by_one = client_for(bob).get("/api/queue").json()["queue"]
    monkeypatch.setattr(selectors, "OWN_COUNTS", 0)  # many of one's own: one read of the keys
    together = client_for(bob).get("/api/queue").json()["queue"]
    assert [(e["id"], e["position"]) for e in together] == [
        (e["id"], e["position"]) for e in one_by_one
    ]
    assert [e["position"] for e in together if e["mine"]] == [5, 6, 7]


def test_a_shared_window_plus_ones_own_entries_is_ones_snapshot(bob, long_line):
    """How a daphne serves sockets connecting together: one window snapshot for all, and
    each user's entries past its head read for that user at the same seq."""
    shared = selectors.queue_snapshot()
    own = selectors.own_entries_past_head(owner_id=bob.pk, seq=shared["seq"])
    assert [e["position"] for e in own] == [5, 6, 7]
    alone = selectors.queue_snapshot(owner_id=bob.pk)
    assert [e["id"] for e in [*shared["queue"], *own]] == [e["id"] for e in alone["queue"]]
    line.entry_cancel(entry_id=long_line[0])  # the queue moves on: that read is refused
    assert selectors.own_entries_past_head(owner_id=bob.pk, seq=shared["seq"]) is None


def test_a_snapshot_read_for_the_viewers_window_is_the_widest_cut_to_it(
    alice, bob, staff, make_meeting, long_line
):
    """GET /api/queue reads only the viewer's window (the head of 2 for non-staff); an own
    entry inside staff's wider window but past one's own head (place 3 here) is still
    there, as in the widest snapshot cut for that viewer."""
    line.entry_move(entry_id=long_line[4], position=3)  # Bob's first at place 3
    for user in (alice, bob, staff, None):
        viewer = events.Viewer.of(user)
        owner_id = viewer.user_id
        widest = events.snapshot_for_viewer(selectors.queue_snapshot(owner_id=owner_id), viewer)
        narrow = selectors.queue_snapshot_for(user)
        assert {k: v for k, v in narrow.items() if k != "timestamp"} == {
            k: v for k, v in widest.items() if k != "timestamp"
        }
    positions = [e["position"] for e in selectors.queue_snapshot_for(bob)["queue"] if e["mine"]]
    assert positions == [3, 6, 7]
