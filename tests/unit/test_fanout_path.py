"""The hub's delivery path: one copy per audience, frames built once, and consumer
handlers that skip Channels' per-message database housekeeping."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from channels.exceptions import StopConsumer

from queue_app.events import Viewer, event_for_viewer
from realtime import consumers, queue_feed
from realtime import hub as hub_module
from realtime.hub import Hub, websocket_frame


class FakeSocket:
    def __init__(self, viewer: Viewer, credential: str | None = None) -> None:
        self.viewer = viewer
        self.credential = credential
        self.received: list[tuple[int, str, bytes]] = []
        self.updates: list[tuple[str, bytes]] = []
        self.closed = False

    def deliver(self, seq: int, text: str, frame: bytes) -> None:
        self.received.append((seq, text, frame))

    def deliver_update(self, text: str, frame: bytes) -> None:
        self.updates.append((text, frame))

    def revoke(self, credential: str | None) -> None:
        if credential in (None, self.credential):
            self.closed = True

    def reset(self) -> None:
        self.closed = True


def hub_with(sockets: list[FakeSocket]) -> Hub:
    hub = Hub()
    for sock in sockets:
        hub.add(sock)
    return hub


def message(owner_id: str, affected: str | None) -> dict:
    return {
        "type": "QueueUpdate",
        "version": 2,
        "update_type": "position_updated",
        "seq": 7,
        "queue": [
            {"id": "e1", "position": 3, "status": "queued", "owner_id": owner_id, "title": "T"},
            {"id": "e2", "position": 4, "status": "queued", "owner_id": "9", "title": "U"},
        ],
        "before": [["queued", 4], ["queued", 3]],
        "entered": [],
        "moved": {"removed": [[3, 2]], "inserted": [[3, 2]]},
        "affected_user_id": affected,
        "global_position": 3,
        "queue_length": 2,
        "waiting": 2,
        "paused": False,
        "timestamp": "2025-01-01T00:00:00Z",
    }


@pytest.mark.parametrize("affected", ["5", None])
def test_every_viewer_gets_exactly_its_own_redacted_copy(affected):
    viewers = [
        Viewer(user_id=5),  # owns e1
        Viewer(user_id=9),  # owns e2
        Viewer(user_id=6),  # owns nothing here
        Viewer(user_id=7),
        Viewer(user_id=1, is_staff=True),
        Viewer(user_id=None),
    ]
    sockets = [FakeSocket(v) for v in viewers for _ in range(2)]  # two tabs each
    hub = hub_with(sockets)
    event = message("5", affected)
    asyncio.run(hub.fan_out(event))
    for sock in sockets:
        [(seq, text, frame)] = sock.received
        assert seq == 7
        assert json.loads(text) == json.loads(json.dumps(event_for_viewer(event, sock.viewer)))
        assert frame == websocket_frame(text)
    others = [s for s in sockets if s.viewer.user_id in (6, 7, None)]
    assert len({s.received[0][1] for s in others}) == 1
    assert '"T"' not in others[0].received[0][1] and '"U"' not in others[0].received[0][1]


def test_progress_reaches_the_owner_and_staff_only_once_per_socket():
    owner, other, staff, anonymous = (
        Viewer(user_id=5),
        Viewer(user_id=6),
        Viewer(user_id=1, is_staff=True),
        Viewer(user_id=None),
    )
    sockets = {v: [FakeSocket(v), FakeSocket(v)] for v in (owner, other, staff, anonymous)}
    hub = hub_with([s for pair in sockets.values() for s in pair])
    update = {"type": "ProgressUpdate", "entry_id": "e1", "owner_id": "5", "progress": 0.5}
    asyncio.run(hub.send_progress(update))
    for viewer, pair in sockets.items():
        for sock in pair:
            if viewer in (owner, staff):
                [(text, frame)] = sock.updates
                assert json.loads(text) == update and frame == websocket_frame(text)
            else:
                assert sock.updates == []


def test_revoking_closes_that_users_sockets_with_that_credential():
    alice_token = FakeSocket(Viewer(user_id=5), credential="token:ab")
    alice_session = FakeSocket(Viewer(user_id=5), credential="session:cd")
    bob = FakeSocket(Viewer(user_id=6), credential="token:ab")
    staff = FakeSocket(Viewer(user_id=5, is_staff=True), credential="session:ef")
    hub = hub_with([alice_token, alice_session, bob, staff])
    asyncio.run(hub.revoke("5", "token:ab"))
    assert [s.closed for s in (alice_token, alice_session, bob, staff)] == [
        True,
        False,
        False,
        False,
    ]
    asyncio.run(hub.revoke("5", None))  # logout everywhere, deactivation
    assert [s.closed for s in (alice_session, bob, staff)] == [True, False, True]


def test_unregister_forgets_the_viewer_with_its_last_socket():
    a, b = FakeSocket(Viewer(user_id=5)), FakeSocket(Viewer(user_id=5))
    hub = hub_with([a, b])
    hub.unregister(a)
    assert hub.by_viewer == {Viewer(user_id=5): {b}}
    hub.unregister(b)
    assert hub.by_viewer == {} and hub.subscribers == set()
    assert hub.viewers_of_user == {} and hub.staff_viewers == set()


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_websocket_frame_is_one_final_unmasked_text_frame(size):
    frame = websocket_frame("x" * size)
    assert frame[0] == 0x81 and not frame[1] & 0x80
    length = frame[1] & 0x7F
    if length == 126:
        length, header = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, header = int.from_bytes(frame[2:10], "big"), 10
    else:
        header = 2
    assert length == size and frame[header:] == b"x" * size


def test_handlers_that_never_touch_the_database_skip_the_housekeeping(monkeypatch):
    hops: list[str] = []

    async def counting_close_old_connections() -> None:
        hops.append("hop")

    monkeypatch.setattr("channels.consumer.aclose_old_connections", counting_close_old_connections)
    monkeypatch.setattr(
        "channels.generic.websocket.aclose_old_connections", counting_close_old_connections
    )
    consumer = consumers.QueueConsumer()
    sent: list[str] = []

    async def send(text_data: str | None = None, **_: object) -> None:
        sent.append(text_data)

    consumer.send = send
    consumer.viewer = Viewer(user_id=5)
    consumer.closing = False

    async def run() -> None:
        await consumer.dispatch({"type": "websocket.receive", "text": '{"type": "ping"}'})
        assert hops == [] and len(sent) == 1
        # Any other handler still gets Channels' housekeeping; connect and disconnect
        # skip it too (their database reads go through database_sync_to_async).
        consumer.registered = False
        with pytest.raises(StopConsumer):
            await consumer.dispatch({"type": "websocket.disconnect", "code": 1000})
        assert hops == [] and consumer.closing
        consumer.some_db_handler = lambda message: asyncio.sleep(0)
        await consumer.dispatch({"type": "some.db.handler"})
        assert hops == ["hop"]

    asyncio.run(run())
    assert json.loads(sent[0]) == {"type": "pong"}


@pytest.mark.django_db
def test_an_entry_row_of_a_model_is_its_values_row(django_user_model):
    """Events build entries from loaded models (entry_row), snapshots from values() rows:
    the one payload builder must get the same row from both."""
    from queue_app import selectors
    from queue_app.events import ENTRY_COLUMNS, entry_payload, entry_row, username_column
    from queue_app.models import Meeting, QueueEntry
    from queue_app.services import line, transfers

    owner = django_user_model.objects.create_user(username="payload-owner", password="x")
    titles = [("Named", ""), ("", "Meeting title"), ("", "")]
    for n, (title, meeting_title) in enumerate(titles):
        meeting = Meeting.objects.create(
            owner=owner, recording_id=100 + n, title=title, meeting_title=meeting_title
        )
        line.entry_enqueue(meeting=meeting)
    transfers.transfer_claim_next(worker="w1")
    rows = {row["id"]: row for row in QueueEntry.objects.values(*ENTRY_COLUMNS, username_column())}
    for entry in QueueEntry.objects.select_related("meeting", "owner"):
        assert entry_row(entry) == rows[entry.id]
    positions = selectors.entry_positions()
    expected = {
        str(entry.id): entry_payload(entry_row(entry), positions.get(entry.id))
        for entry in QueueEntry.objects.select_related("meeting", "owner")
    }
    got = selectors.active_entries()
    assert len(got) == 3
    for payload in got:
        eta = payload.pop("eta_seconds")
        assert eta is None  # nothing has completed yet to estimate from (estimates.py)
        assert payload == expected[payload["id"]]
        assert list(payload) == list(expected[payload["id"]])


class FakeLog:
    """Stands in for the database: the log's newest seq and a counter of snapshot reads."""

    def __init__(self, monkeypatch, seq: int) -> None:
        self.seq = seq
        self.reads = 0
        monkeypatch.setattr(queue_feed, "current_seq", lambda: self.seq)
        monkeypatch.setattr(queue_feed, "queue_snapshot", self.read)
        # Signed-in sockets add their own entries past the head: none here.
        monkeypatch.setattr(queue_feed, "own_entries_past_head", lambda **kwargs: [])
        monkeypatch.setattr(
            queue_feed, "own_entries_past_head_of", lambda owners, seq: {o: [] for o in owners}
        )

    def read(self, owner_id: int | None = None) -> dict:
        self.reads += 1
        return {
            "type": "QueueSnapshot",
            "seq": self.seq,
            "queue": [],
            "waiting": 0,
            "read": self.reads,
        }


def test_sockets_connecting_together_share_one_snapshot_read(monkeypatch):
    log = FakeLog(monkeypatch, seq=4)
    hub = Hub()
    hub.last_seq = 4

    async def run() -> list[dict]:
        return list(await asyncio.gather(*(hub.snapshot() for _ in range(20))))

    snapshots = asyncio.run(run())
    assert log.reads == 1 and {s["read"] for s in snapshots} == {1}
    assert asyncio.run(hub.snapshot())["read"] == 1  # still the newest: reused


def test_a_snapshot_is_read_again_once_the_log_moves_on_or_it_is_old(monkeypatch):
    log = FakeLog(monkeypatch, seq=4)
    hub = Hub()
    hub.last_seq = 4
    asyncio.run(hub.snapshot())
    log.seq = hub.last_seq = 5  # an event was delivered
    snapshot = asyncio.run(hub.snapshot())
    assert (snapshot["seq"], snapshot["read"]) == (5, 2)
    monkeypatch.setattr(hub_module, "SNAPSHOT_MAX_AGE_SECONDS", 0.0)
    assert asyncio.run(hub.snapshot())["read"] == 3  # progress and ETAs age


def test_a_read_begun_before_the_hub_moved_on_is_not_shared_with_later_sockets(monkeypatch):
    log = FakeLog(monkeypatch, seq=4)
    gate = threading.Event()
    read = log.read

    def slow_read(owner_id: int | None = None) -> dict:
        seq = log.seq  # what the read sees when it begins
        gate.wait(5)
        return {**read(), "seq": seq}

    monkeypatch.setattr(queue_feed, "queue_snapshot", slow_read)
    hub = Hub()
    hub.last_seq = 4

    async def run() -> tuple[dict, dict]:
        early = asyncio.create_task(hub.snapshot())
        await asyncio.sleep(0.1)  # its read has begun, at seq 4
        hub.last_seq = log.seq = 5  # event 5 committed and delivered meanwhile
        late = asyncio.create_task(hub.snapshot())  # registered after event 5 went out
        await asyncio.sleep(0.1)
        gate.set()
        return await early, await late

    early, late = asyncio.run(run())
    assert early["seq"] == 4  # enough for the socket that asked before event 5
    assert late["seq"] == 5 and log.reads == 2  # the later one would have missed event 5


def test_a_log_that_went_back_is_followed_not_served_from_the_cache(monkeypatch):
    log = FakeLog(monkeypatch, seq=9)
    hub = Hub()
    hub.last_seq = 9
    asyncio.run(hub.snapshot())
    log.seq = 0  # the database was emptied or restored
    snapshot = asyncio.run(hub.snapshot())
    assert snapshot["seq"] == 0 and snapshot["read"] == 2
    assert hub.last_seq == 0  # new events (seq 1, 2, ...) are not dropped as seen


def test_sockets_holding_the_old_log_are_closed_when_it_goes_back(monkeypatch):
    log = FakeLog(monkeypatch, seq=9)
    old_a, old_b, connecting = (FakeSocket(Viewer(user_id=n)) for n in (5, 6, 7))
    hub = hub_with([old_a, old_b, connecting])
    hub.last_seq = 9
    log.seq = 2  # restored

    async def run() -> dict:
        snapshot = await hub.snapshot(connecting)
        await asyncio.sleep(0)  # the closes run as a task
        return snapshot

    assert asyncio.run(run())["seq"] == 2
    assert (old_a.closed, old_b.closed, connecting.closed) == (True, True, False)
    assert hub.subscribers == {connecting}  # the old ones get no new-log events either


def test_a_resume_read_while_the_hub_moves_on_closes_nothing(monkeypatch):
    """The hub delivering event 10 during a resume's read of the log (newest 9) is normal,
    not a log that went back: no socket is closed."""
    other = FakeSocket(Viewer(user_id=6))
    consumer = consumers.QueueConsumer()
    consumer.viewer = Viewer(user_id=5)
    consumer.pending, consumer.last_seq, consumer.closing = [], 0, False
    sent: list[str] = []

    async def send(text_data: str | None = None, **_: object) -> None:
        sent.append(text_data)

    consumer.send = send

    async def run() -> None:
        hub = hub_module.get_hub()
        hub.last_seq = 9
        hub.add(other)
        hub.add(consumer)

        def replay(last_seq: int, limit: int) -> tuple[int, list]:
            hub.last_seq = 10  # delivered while this read ran
            return 9, []

        monkeypatch.setattr(queue_feed, "events_to_replay", replay)
        await consumer._start_stream(9)
        await asyncio.sleep(0)
        assert hub.last_seq == 10 and not other.closed and other in hub.subscribers

    asyncio.run(run())
    assert consumer.ready and sent == []


def test_another_event_under_a_delivered_seq_closes_the_sockets_holding_the_old_one():
    """PostgreSQL crashed after asynchronous commits: events 6 and 7 were delivered, then
    lost, and the log gave seq 6 and 7 again to new changes before the hub's log check
    saw it shorter. The new event 7 is told apart by its timestamp: the sockets that
    hold the lost ones are closed (they resume and get a snapshot)."""
    sockets = [FakeSocket(Viewer(user_id=5)), FakeSocket(Viewer(user_id=6))]
    hub = hub_with(sockets)
    hub.last_seq = 5

    async def run() -> None:
        for seq in (6, 7):
            await hub._on_event({**message("5", None), "seq": seq})
        await hub._on_event({**message("5", None), "seq": 7})  # the same event, again
        assert not any(sock.closed for sock in sockets)
        await hub._on_event({**message("5", None), "seq": 7, "timestamp": "2025-01-01T00:00:01Z"})
        await asyncio.sleep(0)  # the closes run as a task

    asyncio.run(run())
    assert all(sock.closed for sock in sockets)
    assert [seq for seq, _, _ in sockets[0].received] == [6, 7]
    assert hub.last_seq == 7 and hub.subscribers == set()


def test_the_socket_that_read_the_new_log_first_stays_when_another_read_sees_it_too(
    monkeypatch,
):
    """Two sockets connect right after the log went back (a restored database; in the
    tests, a flush): the first read to finish follows the log and closes the sockets
    holding the old one. The second read, begun before that, compares with the old log:
    it must not follow it again and close the first socket, which holds the new one."""
    log = FakeLog(monkeypatch, seq=9)
    gate = threading.Event()
    read = log.read

    def slow_read(owner_id: int | None = None) -> dict:
        gate.wait(5)
        return {**read(), "seq": log.seq}

    monkeypatch.setattr(queue_feed, "queue_snapshot", slow_read)
    first, second, old = (FakeSocket(Viewer(user_id=None)) for _ in range(3))
    hub = hub_with([first, second, old])
    hub.last_seq = 9
    log.seq = 0  # the log went back

    async def run() -> dict:
        reading = asyncio.create_task(hub.snapshot(first))
        await asyncio.sleep(0.05)
        also = asyncio.create_task(hub.snapshot(second))
        await asyncio.sleep(0.05)
        gate.set()
        snapshot, _ = await reading, await also
        await asyncio.sleep(0.05)  # the closes run as a task
        return snapshot

    assert asyncio.run(run())["seq"] == 0
    assert old.closed and not first.closed
    assert first in hub.subscribers and hub.last_seq == 0


@pytest.mark.parametrize("renewed", [True, False])
def test_a_quiet_hub_keeps_its_groups_past_their_expiry(monkeypatch, renewed):
    """No message for longer than the layer's group_expiry (settings: 5 minutes, so that a
    dead hub's channel leaves the groups): the hub renews its groups on a timer, and the
    next message still reaches it through Redis. Without renewal (the control) it is
    dropped from the group and the message never comes."""
    from channels.layers import get_channel_layer

    from realtime.publisher import USER_MESSAGES_GROUP

    FakeLog(monkeypatch, seq=4)
    monkeypatch.setattr(hub_module, "GROUP_REFRESH_SECONDS", 0.2 if renewed else 3600)
    layer = get_channel_layer()
    monkeypatch.setattr(layer, "group_expiry", 1)
    hub = Hub()
    socket = FakeSocket(Viewer(user_id=5))

    async def run() -> bool:
        await hub.register(socket)
        try:
            await asyncio.sleep(1.6)  # quiet, past group_expiry
            await layer.group_send(
                USER_MESSAGES_GROUP, {"type": "access.revoked", "user_id": "5", "credential": None}
            )
            for _ in range(20):
                if socket.closed:
                    return True
                await asyncio.sleep(0.1)
            return False
        finally:
            hub._task.cancel()

    assert asyncio.run(run()) is renewed
