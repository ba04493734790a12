"""Connecting at the speed of the socket (issue 14): a burst of sockets shares its database
trips (auth, the snapshot's checks, own entries, resumes), and what each socket gets is
exactly what it got when it read alone."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading

import pytest

from queue_app import events, selectors
from queue_app.events import Viewer, snapshot_for_viewer
from queue_app.models import Meeting, QueueEntry
from queue_app.services import line
from realtime import auth, queue_feed
from realtime import hub as hub_module
from realtime.batching import HopBatcher
from realtime.hub import Hub


class Socket:
    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer


def test_keys_asked_together_are_fetched_in_one_trip_and_each_gets_its_own():
    fetched: list[list[int]] = []

    def fetch(keys: dict) -> dict:
        fetched.append(sorted(keys))
        return {key: key * 10 for key in keys if key != 3}

    async def run() -> list:
        batcher = HopBatcher(fetch)
        return await asyncio.gather(*(batcher.get(n % 5) for n in range(50)))

    got = asyncio.run(run())
    assert fetched == [[0, 1, 2, 3, 4]]  # one trip, each key once
    assert got == [None if n % 5 == 3 else (n % 5) * 10 for n in range(50)]


def test_a_one_time_value_asked_twice_in_one_trip_goes_to_one_caller():
    async def fetch(keys: dict) -> dict:
        return dict.fromkeys(keys, "ticket's user")

    async def run() -> list:
        batcher = HopBatcher(fetch, in_thread=False, once=True)
        return await asyncio.gather(*(batcher.get("same ticket") for _ in range(5)))

    assert asyncio.run(run()) == ["ticket's user", None, None, None, None]


@pytest.mark.django_db
def test_a_ticket_presented_by_many_sockets_at_once_is_redeemed_once(django_user_model):
    from realtime.tickets import aredeem_ticket, issue_ticket

    alice = django_user_model.objects.create_user(username="alice-t", password="x")
    ticket = issue_ticket(user_id=alice.pk, credential="c")
    other = issue_ticket(user_id=alice.pk, credential="d")

    async def run() -> list:
        return await asyncio.gather(*(aredeem_ticket(t) for t in [ticket] * 4 + [other]))

    got = asyncio.run(run())
    assert got[:4].count(None) == 3 and got[4] == {"user_id": alice.pk, "credential": "d"}
    assert asyncio.run(aredeem_ticket(ticket)) is None  # and it is gone


def test_a_failed_trip_fails_every_caller_and_the_next_trip_is_fresh():
    calls = []

    def fetch(keys: dict) -> dict:
        calls.append(set(keys))
        if len(calls) == 1:
            raise OSError("database down")
        return dict.fromkeys(keys, "ok")

    async def run() -> tuple[list, str]:
        batcher = HopBatcher(fetch)
        first = await asyncio.gather(*(batcher.get(k) for k in "ab"), return_exceptions=True)
        return first, await batcher.get("c")

    first, second = asyncio.run(run())
    assert [type(e) for e in first] == [OSError, OSError] and second == "ok"


def test_keys_asked_during_a_trip_go_in_the_next_one():
    gate = threading.Event()
    trips: list[set] = []

    def fetch(keys: dict) -> dict:
        trips.append(set(keys))
        gate.wait(5)
        return dict.fromkeys(keys, True)

    async def run() -> None:
        batcher = HopBatcher(fetch)
        first = asyncio.ensure_future(batcher.get("a"))
        await asyncio.sleep(0.1)  # the trip for "a" is under way
        later = [asyncio.ensure_future(batcher.get(k)) for k in "bcd"]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(first, *later)

    asyncio.run(run())
    assert trips == [{"a"}, {"b", "c", "d"}]


@pytest.mark.django_db
def test_tokens_resolve_to_active_users_only(django_user_model):
    from rest_framework.authtoken.models import Token

    alice = django_user_model.objects.create_user(username="alice-c", password="x")
    carol = django_user_model.objects.create_user(username="carol-c", password="x")
    alice_key = Token.objects.create(user=alice).key
    carol_key = Token.objects.create(user=carol).key
    carol.is_active = False
    carol.save()
    found = auth._users_by_api_token(dict.fromkeys([alice_key, carol_key, "f" * 40]))
    assert found == {alice_key: alice}
    assert auth._users_by_id(dict.fromkeys([alice.pk, carol.pk, 999_999])) == {alice.pk: alice}


@pytest.mark.django_db
def test_own_entries_of_many_owners_are_each_owners_own_read(monkeypatch, django_user_model):
    monkeypatch.setattr(events, "STAFF_HEAD_PLACES", 4)
    monkeypatch.setattr(queue_feed, "STAFF_HEAD_PLACES", 4)
    users = [
        django_user_model.objects.create_user(username=f"owner-{n}", password="x") for n in range(4)
    ]
    for n in range(14):  # fair share spreads them: every owner has some past the head
        meeting = Meeting.objects.create(owner=users[n % 3], recording_id=500 + n, title="M")
        line.entry_enqueue(meeting=meeting)
    seq = selectors.current_seq()
    owners = [u.pk for u in users]
    together = queue_feed.own_entries_past_head_of(owners, seq)
    for owner in owners:
        alone = selectors.own_entries_past_head(owner_id=owner, seq=seq)
        assert together[owner] == alone
    assert together[users[3].pk] == [] and all(together[u.pk] for u in users[:3])
    rows = QueueEntry.objects.filter(status="queued")
    assert queue_feed.waiting_counts(seq) == {u.pk: rows.filter(owner=u).count() for u in users[:3]}
    assert queue_feed.waiting_counts(seq - 1) is None
    assert queue_feed.own_entries_past_head_of(owners, seq - 1) == dict.fromkeys(owners)


class FakeLog:
    def __init__(self, monkeypatch, seq: int, waiting: int = 0) -> None:
        self.seq = seq
        self.reads = 0
        self.own_reads: list[list[int]] = []
        self.waiting = waiting
        monkeypatch.setattr(queue_feed, "current_seq", lambda: self.seq)
        monkeypatch.setattr(queue_feed, "queue_snapshot", self.read)
        monkeypatch.setattr(queue_feed, "own_entries_past_head_of", self.own)
        monkeypatch.setattr(queue_feed, "events_to_replay", self.replay)
        monkeypatch.setattr(queue_feed, "waiting_counts", self.counts)
        self.replays = 0
        self.count_reads = 0
        # 5 waits twice (one in the head), 6 once (in the head), 7 once (further back).
        self.waiting_by_user = {5: 2, 6: 1, 7: 1}

    def counts(self, seq: int) -> dict[int, int] | None:
        self.count_reads += 1
        return self.waiting_by_user if seq == self.seq else None

    def read(self, owner_id: int | None = None) -> dict:
        self.reads += 1
        head = [
            {"id": "h1", "position": 1, "status": "queued", "owner_id": "5", "title": "mine"},
            {"id": "h2", "position": 2, "status": "queued", "owner_id": "6", "title": "not"},
        ]
        return {"type": "QueueSnapshot", "seq": self.seq, "waiting": self.waiting, "queue": head}

    def own(self, owners: list[int], seq: int) -> dict:
        self.own_reads.append(sorted(owners))
        return {
            owner: [
                {
                    "id": f"o{owner}",
                    "position": 300,
                    "status": "queued",
                    "owner_id": str(owner),
                    "title": "far back",
                }
            ]
            for owner in owners
        }

    def replay(self, last_seq: int, limit: int) -> tuple[int, list]:
        self.replays += 1
        return self.seq, [{"seq": s} for s in range(last_seq + 1, self.seq + 1)]


def test_sockets_connecting_together_share_reads_and_get_their_own_window(monkeypatch):
    log = FakeLog(monkeypatch, seq=4, waiting=500)  # a line longer than the head
    hub = Hub()
    hub.last_seq = 4
    sockets = [Socket(Viewer(user_id=n)) for n in (5, 5, 6, 7, 8)] + [Socket(Viewer(None))]

    async def run() -> list[tuple[int, str]]:
        return list(await asyncio.gather(*(hub.snapshot_text(s) for s in sockets)))

    texts = asyncio.run(run())
    # One read of each kind, and own entries only for those with entries past the head.
    assert log.reads == 1 and log.count_reads == 1 and log.own_reads == [[5, 7]]
    for sock, (seq, text) in zip(sockets, texts, strict=True):
        full = asyncio.run(hub.snapshot(sock))
        assert seq == 4 and json.loads(text) == snapshot_for_viewer(full, sock.viewer)
    assert texts[0][1] is texts[1][1]  # one user's two tabs: one encode
    mine = json.loads(texts[0][1])["queue"]
    assert [e["id"] for e in mine] == ["h1", "h2", "o5"] and "title" not in mine[1]
    assert texts[4][1] is texts[5][1]  # 8 owns nothing in view: the anonymous bytes
    sixth = json.loads(texts[2][1])["queue"]
    assert [e["id"] for e in sixth] == ["h1", "h2"] and sixth[1]["title"] == "not"


def test_no_own_read_when_the_whole_line_is_in_the_head(monkeypatch):
    log = FakeLog(monkeypatch, seq=4, waiting=events.STAFF_HEAD_PLACES)
    hub = Hub()
    hub.last_seq = 4
    seq, text = asyncio.run(hub.snapshot_text(Socket(Viewer(user_id=5)), reset=True))
    assert seq == 4
    assert log.own_reads == [] and json.loads(text)["reset"] is True


def test_resumes_from_one_seq_share_one_read_unless_the_hub_moved_past_it(monkeypatch):
    log = FakeLog(monkeypatch, seq=9)
    hub = Hub()
    hub.last_seq = 9
    sockets = [Socket(Viewer(user_id=n)) for n in range(10)]

    async def run() -> list:
        return list(await asyncio.gather(*(hub.replay(s, 7, 100) for s in sockets)))

    replays = asyncio.run(run())
    assert log.replays == 1 and all(r == [{"seq": 8}, {"seq": 9}] for r in replays)
    hub.last_seq = log.seq = 10  # event 10 delivered: a later resume must include it
    assert asyncio.run(hub.replay(sockets[0], 7, 100))[-1] == {"seq": 10}
    assert log.replays == 2
    monkeypatch.setattr(hub_module, "SNAPSHOT_MAX_AGE_SECONDS", 0.0)
    asyncio.run(hub.replay(sockets[0], 7, 100))
    assert log.replays == 3  # and none is kept for long


def test_a_replayed_event_is_each_viewers_copy_encoded_once_per_audience():
    from queue_app.events import event_for_viewer
    from tests.unit.test_fanout_path import message

    hub = Hub()
    event = message("5", None)
    viewers = [
        Viewer(user_id=5),
        Viewer(user_id=9),
        Viewer(user_id=6),
        Viewer(user_id=7),
        Viewer(user_id=1, is_staff=True),
        Viewer(user_id=None),
    ]
    texts = {viewer: hub.event_text(event, viewer) for viewer in viewers}
    for viewer, text in texts.items():
        assert json.loads(text) == json.loads(json.dumps(event_for_viewer(event, viewer)))
    assert texts[Viewer(user_id=6)] is texts[Viewer(user_id=7)] is texts[Viewer(None)]
    assert texts[Viewer(user_id=5)] != texts[Viewer(user_id=6)]


def test_token_sockets_skip_the_session_layers_and_others_go_through_them():
    seen: list[str] = []

    async def token_app(scope, receive, send) -> None:
        seen.append("token")

    async def session_app(scope, receive, send) -> None:
        seen.append("session")

    router = auth.TokenOrSession(token_app=token_app, session_app=session_app)

    def route(query: bytes) -> str:
        seen.clear()
        asyncio.run(router({"type": "websocket", "query_string": query}, None, None))
        return seen[0]

    assert route(b"token=abc") == route(b"last_seq=3&token=abc") == "token"
    # No token, an empty one (parse_qs drops it) or "token" elsewhere: the session stack,
    # which reads the session's user as before.
    for query in (b"", b"token=", b"tokens=1", b"x=token", b"last_seq=1"):
        assert route(query) == "session", query


def test_a_subscribed_hub_takes_a_socket_without_waiting(monkeypatch):
    hub = Hub()

    async def register() -> None:
        hub._task = asyncio.get_running_loop().create_future()  # "running"
        hub._ready.set()

        def no_wait(*args, **kwargs):
            raise AssertionError("no wait_for once the hub is subscribed")

        monkeypatch.setattr(hub_module.asyncio, "wait_for", no_wait)
        socket = Socket(Viewer(user_id=1))
        await hub.register(socket)
        assert socket in hub.subscribers

    asyncio.run(register())


def test_the_snapshot_encoder_gives_snapshot_for_viewers_bytes():
    """SnapshotEncoder (the hub's shared encoding for viewers who are not staff) gives the
    bytes of json.dumps(snapshot_for_viewer(...)) for an owner, another user and
    anonymous, with and without their own entries past the head and reset."""

    def entry(n: int, status: str, position: int | None, owner: int) -> dict:
        return {
            "id": f"e{n}",
            "position": position,
            "status": status,
            "owner_id": str(owner),
            "title": f"t{n}",
            "eta_seconds": n,
        }

    queue = [entry(0, "running", None, 5), entry(1, "retrying", None, 6)]
    queue += [entry(n, "queued", n - 1, 5 + n % 3) for n in range(2, 40)]
    queue.append(entry(99, "completed", None, 5))  # a finished entry is nobody's window
    snapshot = {
        "type": "QueueSnapshot",
        "version": 2,
        "seq": 7,
        "paused": False,
        "queue_length": 300,
        "waiting": 298,
        "head_places": events.STAFF_HEAD_PLACES,
        "queue": queue,
        "timestamp": "2026-12-02T20:00:00Z",
    }
    own = [entry(200, "queued", 250, 5), entry(201, "queued", 260, 5)]
    for reset in (False, True):
        encoder = events.SnapshotEncoder(snapshot, reset=reset)
        for viewer, mine in (
            (Viewer(user_id=5), own),
            (Viewer(user_id=5), None),
            (Viewer(user_id=6), None),
            (Viewer(user_id=None), None),
        ):
            full = {**snapshot, "queue": [*queue, *mine]} if mine else snapshot
            expected = events.snapshot_for_viewer(full, viewer)
            if reset:
                expected["reset"] = True
            assert encoder.text(viewer, mine) == json.dumps(expected)


def test_only_a_token_of_a_tickets_length_is_looked_up_in_redis(monkeypatch):
    """Tickets are token_urlsafe(32), 43 characters; API tokens 40 hex digits. A token of
    another length never reaches Redis; one of a ticket's length that is no ticket is
    still tried as an API token (and found by neither: anonymous, closed with 4401)."""
    from django.contrib.auth.models import AnonymousUser

    from realtime import tickets

    redeemed, looked_up = [], []

    async def redeem(token):
        redeemed.append(token)
        return None

    async def api_user(token):
        looked_up.append(token)
        return AnonymousUser()

    monkeypatch.setattr(auth, "aredeem_ticket", redeem)
    monkeypatch.setattr(auth, "_user_by_api_token", api_user)
    api_token = "a" * 40
    ticket_shaped = secrets.token_urlsafe(tickets.TICKET_BYTES)
    assert len(ticket_shaped) == tickets.TICKET_LENGTH != len(api_token)
    for token in (api_token, ticket_shaped):
        user, credential = asyncio.run(auth._authenticate_token(token))
        assert not user.is_authenticated and credential == tickets.fingerprint(token)
    assert redeemed == [ticket_shaped] and looked_up == [api_token, ticket_shaped]
