"""Live updates against real daphne processes and the real Redis: privacy, auth, resume."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from datetime import timedelta

import httpx
import pytest
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from devtools import processes
from queue_app.broadcast import publish_progress
from queue_app.models import QueueEvent, QueueState
from queue_app.services import line
from realtime import publisher, tickets
from tests.helpers import PASSWORD
from tests.integration.wsclient import Socket, open_socket
from tests.processes import LOG_DIR, ROOT, login, start_daphne, ws_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SECRET_TITLE = "Alice's confidential acquisition talks"
PUBLIC_ENTRY_KEYS = {"id", "position", "status", "mine"}


@pytest.fixture(autouse=True)
def no_dispatch(settings):
    # No Celery worker runs here: nothing would consume dispatch requests.
    settings.QUEUE_DISPATCH_ON_COMMIT = False


@pytest.fixture
def people(make_user):
    return make_user("alice"), make_user("bob"), make_user("admin", is_staff=True)


@pytest.fixture(scope="module")
def second_server_url(process_env):
    process, base_url = start_daphne(process_env, name="daphne-2")
    yield base_url
    process.stop()


def test_each_viewer_sees_what_they_may(live_server_url, people, make_meeting):
    alice, bob, _admin = people
    secret = make_meeting(alice, SECRET_TITLE)
    bobs = make_meeting(bob, "Bob's weekly sync")
    sessions = {name: login(live_server_url, name, PASSWORD) for name in ("alice", "bob", "admin")}
    sockets = {name: open_socket(live_server_url, session=s) for name, s in sessions.items()}
    try:
        for socket in sockets.values():
            assert socket.recv()["type"] == "QueueSnapshot"

        entry = line.entry_enqueue(meeting=secret)
        seen = {name: socket.recv_update() for name, socket in sockets.items()}
        assert {m["update_type"] for m in seen.values()} == {"meeting_added"}
        assert len({m["seq"] for m in seen.values()}) == 1, "one seq for everyone"

        mine, staff_view, redacted = (
            seen["alice"]["queue"][0],
            seen["admin"]["queue"][0],
            seen["bob"]["queue"][0],
        )
        assert mine["title"] == SECRET_TITLE and mine["owner"] == "alice" and mine["mine"] is True
        assert staff_view["title"] == SECRET_TITLE and staff_view["mine"] is False
        assert redacted == {"id": str(entry.id), "position": 1, "status": "queued", "mine": False}
        assert seen["alice"]["affected_user_id"] == str(alice.pk)
        assert seen["bob"]["affected_user_id"] is None

        # More of the line moving: bob's own entry, a move, a cancel, a clear.
        line.entry_enqueue(meeting=bobs)
        line.entry_move(entry_id=entry.id, position="bottom")
        line.entry_cancel(entry_id=entry.id)
        line.entry_retry(entry_id=entry.id)
        line.queue_clear()
        expected = [
            "meeting_added",
            "position_updated",
            "meeting_removed",
            "task_retried",
            "queue_cleared",
        ]
        for name, socket in sockets.items():
            updates = [socket.recv_update() for _ in expected]
            assert [u["update_type"] for u in updates] == expected, name
            seqs = [seen[name]["seq"]] + [u["seq"] for u in updates]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "contiguous on each socket"
        bob_own = json.loads(sockets["bob"].frames[2])["queue"][0]
        assert bob_own["title"] == "Bob's weekly sync" and bob_own["mine"] is True
        for frame in sockets["bob"].frames:
            assert SECRET_TITLE not in frame
            assert "alice" not in frame.lower()
            for message_entry in json.loads(frame).get("queue", []):
                if message_entry["id"] == str(entry.id):
                    assert set(message_entry) == PUBLIC_ENTRY_KEYS
    finally:
        for socket in sockets.values():
            socket.close()


def test_refused_connections_get_the_documented_codes(live_server_url, people):
    alice, bob, _ = people
    session = login(live_server_url, "alice", PASSWORD)

    with open_socket(live_server_url, session=session, query=f"?user_id={bob.pk}") as forged:
        assert forged.close_code() == 4403
    with open_socket(live_server_url, session=session, query=f"?user_id={alice.pk}") as own:
        assert own.recv()["type"] == "QueueSnapshot"
    with open_socket(live_server_url) as anonymous:
        assert anonymous.close_code() == 4401

    expired = tickets.issue_ticket(user_id=alice.pk, credential=None)
    tickets._client().pexpire(tickets._KEY_PREFIX + tickets.fingerprint(expired), 1)
    time.sleep(0.05)
    with open_socket(live_server_url, query=f"?token={expired}") as socket:
        assert socket.close_code() == 4401

    response = session.post("/api/ws-ticket", headers={"X-CSRFToken": session.cookies["csrftoken"]})
    assert response.status_code == 201
    ticket = response.json()["ticket"]
    with open_socket(live_server_url, query=f"?token={ticket}") as first:
        snapshot = first.recv()
        assert snapshot["type"] == "QueueSnapshot"
    with open_socket(live_server_url, query=f"?token={ticket}") as reused:
        assert reused.close_code() == 4401

    with pytest.raises(InvalidStatus) as refused:
        open_socket(live_server_url, session=session, origin="http://evil.example")
    assert refused.value.response.status_code == 403


def test_resume_replays_exactly_what_was_missed(live_server_url, people, make_meeting):
    alice, bob, _ = people
    session = login(live_server_url, "alice", PASSWORD)
    with open_socket(live_server_url, session=session) as socket:
        last_seq = socket.recv()["seq"]

    missed = [make_meeting(alice if i % 2 else bob, f"meeting {i}") for i in range(20)]
    for meeting in missed:
        line.entry_enqueue(meeting=meeting)

    with open_socket(live_server_url, session=session, query=f"?last_seq={last_seq}") as socket:
        replayed = [socket.recv() for _ in range(20)]
        assert [m["seq"] for m in replayed] == list(range(last_seq + 1, last_seq + 21))
        assert all(m["update_type"] == "meeting_added" for m in replayed)
        for meeting, message in zip(missed, replayed, strict=True):
            (entry,) = message["queue"]
            if meeting.owner_id == alice.pk:
                assert entry["title"] == meeting.title
            else:
                assert set(entry) == PUBLIC_ENTRY_KEYS
        line.entry_cancel(entry_id=replayed[0]["queue"][0]["id"])
        live = socket.recv()
        assert (live["update_type"], live["seq"]) == ("meeting_removed", last_seq + 21)

        # The resume message does the same on an open socket.
        socket.send({"type": "resume", "last_seq": last_seq + 18})
        again = [socket.recv()["seq"] for _ in range(3)]
        assert again == [last_seq + 19, last_seq + 20, last_seq + 21]
        assert socket.nothing_pending()

    # Older than the retention window: a fresh snapshot that says so.
    assert line.events_prune(older_than=timedelta(0)) == 20
    with open_socket(live_server_url, session=session, query=f"?last_seq={last_seq}") as socket:
        reset = socket.recv()
        assert reset["type"] == "QueueSnapshot" and reset["reset"] is True
        assert reset["seq"] == last_seq + 21
        assert reset["queue_length"] == 19


def test_lost_publishes_are_repaired_from_the_log(
    live_server_url, people, make_meeting, monkeypatch
):
    alice, _, _ = people
    session = login(live_server_url, "alice", PASSWORD)
    first, second, third = (make_meeting(alice, f"m{i}") for i in range(3))
    with open_socket(live_server_url, session=session) as socket:
        seq = socket.recv()["seq"]
        with monkeypatch.context() as patch:
            patch.setattr(publisher, "publish_to_group", lambda group, message: False)
            line.entry_enqueue(meeting=first)  # committed, never published
        line.entry_enqueue(meeting=second)
        assert [socket.recv()["seq"] for _ in range(2)] == [seq + 1, seq + 2]

        with monkeypatch.context() as patch:
            patch.setattr(publisher, "publish_to_group", lambda group, message: False)
            line.entry_enqueue(meeting=third)  # lost, and no later event shows the gap
        started = time.monotonic()
        assert socket.recv(timeout=10)["seq"] == seq + 3
        assert time.monotonic() - started < 6


def test_several_daphne_processes_share_the_stream(
    live_server_url, second_server_url, people, make_meeting
):
    alice, _, _ = people
    meeting = make_meeting(alice)
    one = open_socket(live_server_url, session=login(live_server_url, "alice", PASSWORD))
    two = open_socket(second_server_url, session=login(second_server_url, "bob", PASSWORD))
    with one, two:
        one.recv(), two.recv()
        line.entry_enqueue(meeting=meeting)
        a, b = one.recv(), two.recv()
        assert a["seq"] == b["seq"] and a["update_type"] == b["update_type"] == "meeting_added"
        assert a["queue"][0]["mine"] is True and set(b["queue"][0]) == PUBLIC_ENTRY_KEYS


def test_progress_reaches_owner_and_staff_only_and_is_coalesced(
    live_server_url, people, make_meeting
):
    alice, _, _ = people
    entry = line.entry_enqueue(meeting=make_meeting(alice, SECRET_TITLE))
    sockets = {
        name: open_socket(live_server_url, session=login(live_server_url, name, PASSWORD))
        for name in ("alice", "bob", "admin")
    }
    try:
        for socket in sockets.values():
            socket.recv()
        sent = sum(
            publish_progress(
                entry_id=entry.id, owner_id=alice.pk, stage="downloading", progress=i / 100
            )
            for i in range(50)
        )
        assert sent < 10, "50 ticks in well under a second are coalesced"
        publish_progress(entry_id=entry.id, owner_id=alice.pk, stage="downloading", progress=1.0)
        for name in ("alice", "admin"):
            updates = []
            while not updates or updates[-1]["progress"] < 1.0:
                updates.append(sockets[name].recv())
            assert all(u["type"] == "ProgressUpdate" for u in updates)
            assert len(updates) == sent + 1
            assert updates[-1] == {**updates[-1], "entry_id": str(entry.id), "stage": "downloading"}
        assert sockets["bob"].nothing_pending()
        assert not any("ProgressUpdate" in frame for frame in sockets["bob"].frames)
    finally:
        for socket in sockets.values():
            socket.close()


def test_access_changes_close_sockets(live_server_url, people):
    alice, bob, _ = people
    alice_session = login(live_server_url, "alice", PASSWORD)
    token = Token.objects.create(user=alice)

    def opened(**how) -> Socket:
        # Each with its snapshot before the next opens: the database was flushed after the
        # test before, and the first read after a flush closes the sockets then open
        # (their state is the old log's: Hub.log_went_back).
        opening = stack.enter_context(open_socket(live_server_url, **how))
        assert opening.recv()["type"] == "QueueSnapshot"
        return opening

    with contextlib.ExitStack() as stack:
        by_session = opened(session=alice_session)
        by_token = opened(query=f"?token={token.key}")
        bobs = opened(session=login(live_server_url, "bob", PASSWORD))

        token.delete()
        assert by_token.close_code(timeout=1) == 4401
        assert by_session.nothing_pending(0.1), "revoking a token leaves the session's socket"

        alice_session.post(
            "/accounts/logout/", headers={"X-CSRFToken": alice_session.cookies["csrftoken"]}
        )
        assert by_session.close_code(timeout=1) == 4401

        bob.is_active = False
        bob.save()
        assert bobs.close_code(timeout=1) == 4401


def test_bad_frames_get_errors_and_the_socket_carries_on(live_server_url, people):
    session = login(live_server_url, "alice", PASSWORD)
    with open_socket(live_server_url, session=session) as socket:
        socket.recv()
        for frame, code in [
            ("not json", "invalid_json"),
            ("[1, 2]", "invalid_message"),
            ({"type": "subscribe"}, "unknown_type"),
            ({"type": "resume", "last_seq": -3}, "invalid_last_seq"),
            ({"type": "resume", "last_seq": "x"}, "invalid_last_seq"),
            ("x" * (65 * 1024), "frame_too_large"),
        ]:
            socket.send(frame)
            reply = socket.recv()
            assert (reply["type"], reply["code"]) == ("error", code)
        socket.send({"type": "ping"})
        assert socket.recv() == {"type": "pong"}
    assert QueueEvent.objects.count() == 0


def test_a_client_that_stops_reading_is_dropped_without_delaying_others(
    process_env, people, make_meeting
):
    alice, _, _ = people
    # Small buffers keep the test short (the kernel would otherwise take 4 MB first);
    # the mechanism is the one the defaults use.
    process, base_url = start_daphne(
        {
            **process_env,
            "REALTIME_MAX_BACKLOG_BYTES": str(128 * 1024),
            "REALTIME_SOCKET_SNDBUF": str(32 * 1024),
        },
        name="daphne-slow",
    )
    try:
        reader = open_socket(base_url, session=login(base_url, "alice", PASSWORD))
        # The stalled client: a 4 KB receive buffer and a one-frame queue, and it never reads.
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect, to count
        raw.connect(("127.0.0.1", int(base_url.rsplit(":", 1)[1])))
        stalled = Socket(
            connect(
                ws_url(base_url),
                sock=raw,
                origin=base_url,
                additional_headers={
                    "Cookie": f"sessionid={login(base_url, 'admin', PASSWORD).cookies['sessionid']}"
                },
                max_queue=1,
                proxy=None,
                legacy=True,
            )
        )
        with reader, stalled:
            snapshot_seq = reader.recv()["seq"]
            meetings = [make_meeting(alice, f"{i:04d} " + "x" * 480) for i in range(400)]
            for meeting in meetings:
                line.entry_enqueue(meeting=meeting)
            # The reader gets every event, however stuck the other socket is.
            seqs = [reader.recv(timeout=10)["seq"] for _ in meetings]
            assert seqs == list(range(snapshot_seq + 1, snapshot_seq + 401))

            # The stalled socket was dropped: reading now ends in a close, not 400 events.
            received = []
            with pytest.raises(ConnectionClosed):
                while True:
                    received.append(stalled.recv(timeout=10))
            assert len(received) < 400
        # It recovers by resuming from the last event it saw.
        last_seen = max((m.get("seq", 0) for m in received), default=snapshot_seq)
        with open_socket(
            base_url,
            session=login(base_url, "admin", PASSWORD),
            query=f"?last_seq={last_seen}",
        ) as resumed:
            rest = [resumed.recv()["seq"] for _ in range(snapshot_seq + 400 - last_seen)]
            assert rest == list(range(last_seen + 1, snapshot_seq + 401))
    finally:
        process.stop()


def test_a_stopping_daphne_closes_its_sockets_with_1012_and_they_resume_on_the_next(
    process_env, people, make_meeting
):
    """SIGTERM: every socket gets a close frame with 1012 (service restart) at once, not
    a dropped connection when daphne's own shutdown gets to it, and the process ends
    promptly with status 0. The client then resumes on the next daphne without a gap."""
    alice, _bob, _admin = people
    meeting = make_meeting(alice, "Restart")
    token = Token.objects.create(user=alice).key
    process, base_url = start_daphne(process_env, name="daphne-stopping")
    try:
        sockets = [open_socket(base_url, query=f"?token={token}") for _ in range(3)]
        seq = max(s.recv()["seq"] for s in sockets)
        session = login(base_url, "alice", PASSWORD)
        with open_socket(base_url, session=session) as by_cookie:
            assert by_cookie.recv()["type"] == "QueueSnapshot"
            started = time.monotonic()
            process.popen.terminate()
            codes = [s.close_code(timeout=5) for s in [*sockets, by_cookie]]
            closed_after = time.monotonic() - started
            assert process.popen.wait(timeout=10) == 0
        assert codes == [1012] * 4
        assert closed_after < 3, "the close frames go out before daphne's own shutdown"
        assert any("with 1012" in line for line in process.output)
    finally:
        process.stop()
    entry = line.entry_enqueue(meeting=meeting)  # while no daphne runs
    process, base_url = start_daphne(process_env, name="daphne-started")
    try:
        with open_socket(base_url, query=f"?token={token}&last_seq={seq}") as resumed:
            missed = resumed.recv()
            assert missed["type"] == "QueueUpdate" and missed["seq"] == seq + 1
            assert str(entry.id) in json.dumps(missed)
    finally:
        process.stop()


def test_a_new_daphne_takes_over_the_port_before_the_old_one_stops(
    process_env, people, make_meeting, tmp_path
):
    """A restart with no moment when nobody listens (realtime.serve): a second daphne
    starts on the port the first serves; once ready, `--replace` stops the first, whose
    sockets get 1012 and resume on the second without a gap. Nobody trying to connect
    meanwhile is refused."""
    alice, _bob, _admin = people
    meeting = make_meeting(alice, "Hand-over")
    token = Token.objects.create(user=alice).key
    pidfile = tmp_path / "daphne.pid"
    first, port = processes.start_daphne(
        process_env, "daphne-first", log_dir=LOG_DIR, cwd=ROOT, options=("--replace", str(pidfile))
    )
    second = None
    base_url = f"http://127.0.0.1:{port}"
    refused, answered = [], []
    polling = threading.Event()

    def poll() -> None:  # a client connecting all along
        while not polling.is_set():
            try:
                answered.append(httpx.get(f"{base_url}/healthz", timeout=5).status_code)
            except httpx.ConnectError as exc:
                refused.append(exc)
            except httpx.HTTPError:
                pass  # reset in the old daphne's accept queue as it closed: the client retries
            time.sleep(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    try:
        assert pidfile.read_text().strip() == str(first.pid)
        sockets = [open_socket(base_url, query=f"?token={token}") for _ in range(3)]
        seq = max(s.recv()["seq"] for s in sockets)
        poller.start()
        second, same_port = processes.start_daphne(
            process_env,
            "daphne-second",
            log_dir=LOG_DIR,
            cwd=ROOT,
            port=port,
            options=("--replace", str(pidfile)),
        )
        assert same_port == port
        assert first.popen.wait(timeout=10) == 0, "the new daphne stopped the old one"
        assert [s.close_code(timeout=5) for s in sockets] == [1012] * 3
        assert pidfile.read_text().strip() == str(second.pid)
        assert any(f"asked daphne {first.pid} to stop" in line for line in second.output)

        entry = line.entry_enqueue(meeting=meeting)  # after the old daphne stopped
        with open_socket(base_url, query=f"?token={token}&last_seq={seq}") as resumed:
            missed = resumed.recv()
            assert missed["type"] == "QueueUpdate" and missed["seq"] == seq + 1
            assert str(entry.id) in json.dumps(missed)
        time.sleep(0.2)
    finally:
        polling.set()
        if poller.is_alive():
            poller.join(timeout=10)
        first.stop()
        if second is not None:
            second.stop()
    assert not refused, f"connections refused during the hand-over: {refused[:3]}"
    assert answered and set(answered) == {200}


def test_a_log_that_went_back_closes_the_sockets_of_the_old_one_with_1012(
    live_server_url, people, make_meeting
):
    """A restored database (here the log emptied under a running daphne): the sockets that
    hold the old log's state are closed with 1012, so that their clients resume onto a
    fresh snapshot. Through daphne's own close (autobahn's sendClose) 1012 raised and the
    socket stayed open."""
    alice, _bob, _admin = people
    token = Token.objects.create(user=alice).key
    with open_socket(live_server_url, query=f"?token={token}") as old:
        first = old.recv()["seq"]
        line.entry_enqueue(meeting=make_meeting(alice, "Before the restore"))
        assert old.recv_update()["seq"] == first + 1
        QueueEvent.objects.all().delete()
        QueueState.objects.filter(pk=1).update(last_seq=0)
        with open_socket(live_server_url, query=f"?token={token}") as new:
            assert new.recv()["seq"] == 0  # the new socket reads the log as it is now
            assert old.close_code(timeout=5) == 1012
