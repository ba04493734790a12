"""The channel layer over two Redis hosts (CHANNEL_LAYER_REDIS_URLS), with two daphnes.

Two private redis-servers are the layer's shards; two daphne processes and this process
(which writes, as a worker would) list them in the same order. Events are written here
and through each daphne's API; every socket on both daphnes must get every seq, in
order, and the progress updates (which have no log to be repaired from, so only the
layer can bring them) must reach every socket allowed to see them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from rest_framework.authtoken.models import Token

from queue_app import broadcast
from queue_app.models import QueueState
from queue_app.services import line
from tests.faults.servers import PrivateRedis
from tests.helpers import PASSWORD
from tests.integration.wsclient import Socket, open_socket
from tests.processes import login, start_daphne

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def shards() -> Iterator[list[PrivateRedis]]:
    servers = []
    try:
        for _ in range(2):
            server = PrivateRedis()
            servers.append(server)
            server.start()
    except FileNotFoundError as missing:
        pytest.skip(f"two private Redis servers are needed: {missing}")
    yield servers
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def layer_urls(shards) -> str:
    return ",".join(server.url() for server in shards)


@pytest.fixture(scope="module")
def daphnes(process_env, layer_urls) -> Iterator[list[str]]:
    env = {**process_env, "CHANNEL_LAYER_REDIS_URLS": layer_urls, "QUEUE_DISPATCH_ON_COMMIT": "0"}
    started = []
    try:
        for name in ("daphne-shard-a", "daphne-shard-b"):
            started.append(start_daphne(env, name=name))
        yield [base_url for _, base_url in started]
    finally:
        for process, _ in started:
            process.stop()


@pytest.fixture
def sharded_here(settings, layer_urls):
    """This process publishes through the same two shards (pytest-django's settings
    fixture makes Channels drop its cached layer, now and after the test)."""
    layers = settings.CHANNEL_LAYERS
    hosts = layers["default"]["CONFIG"]["hosts"]
    settings.CHANNEL_LAYERS = {
        "default": {
            **layers["default"],
            "CONFIG": {
                **layers["default"]["CONFIG"],
                "hosts": [{**hosts[0], "address": url} for url in layer_urls.split(",")],
            },
        }
    }
    settings.QUEUE_DISPATCH_ON_COMMIT = False


def read_until(socket: Socket, want: set[int], progress: set[str], timeout: float = 20):
    """Frames until every seq in `want` and a ProgressUpdate for every entry in `progress`
    came (or the time is up): the seqs in arrival order and the progress entries seen."""
    seqs: list[int] = []
    seen_progress: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (want <= set(seqs) and progress <= seen_progress):
        try:
            message = socket.recv(timeout=max(deadline - time.monotonic(), 0.05))
        except TimeoutError:
            break
        if message["type"] == "QueueUpdate":
            seqs.append(message["seq"])
        elif message["type"] == "ProgressUpdate":
            seen_progress.add(message["entry_id"])
    return seqs, seen_progress


def test_every_socket_on_both_daphnes_gets_every_seq(
    daphnes, shards, sharded_here, settings, alice, staff, make_meeting
):
    meetings = [make_meeting(alice) for _ in range(6)]
    token = Token.objects.create(user=alice).key
    sockets: list[tuple[str, Socket]] = []
    try:
        for base_url in daphnes:
            for name in ("alice", "admin", "alice", "admin"):
                session = login(base_url, name, PASSWORD)
                sockets.append((name, open_socket(base_url, session=session)))
        start = {id(s): s.recv()["seq"] for _, s in sockets}
        assert len(set(start.values())) == 1, "every snapshot at the same seq"
        first = next(iter(start.values()))

        # Writers in three processes: this one, then each daphne through the API.
        entries = [line.entry_enqueue(meeting=meetings[0]), line.entry_enqueue(meeting=meetings[1])]
        for base_url, meeting in zip(daphnes, meetings[2:4], strict=True):
            response = httpx.post(
                f"{base_url}/api/queue",
                json={"meeting_id": meeting.id},
                headers={"Authorization": f"Token {token}"},
                timeout=10,
            )
            assert response.status_code == 201, response.text
        line.entry_move(entry_id=entries[1].id, position=1)
        line.entry_cancel(entry_id=entries[0].id)
        line.entries_enqueue(owner=alice, meeting_ids=[m.id for m in meetings[4:]])
        assert broadcast.publish_progress(
            entry_id=entries[1].id, owner_id=alice.pk, stage="downloading", progress=0.25
        )

        last = QueueState.objects.get(pk=1).last_seq
        want = set(range(first + 1, last + 1))
        assert len(want) == 7  # two here, two through the API, a move, a cancel, a bulk
        for name, socket in sockets:
            seqs, progress = read_until(socket, want, {str(entries[1].id)})
            assert seqs == sorted(want), (name, seqs)
            assert progress == {str(entries[1].id)}, name
    finally:
        for _, socket in sockets:
            socket.close()

    # The layer really is over both hosts: each group lives on the one shard its name
    # hashes to, and each shard holds one of the hubs' two groups.
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    groups = [
        {key.decode() for key in redis.Redis.from_url(server.url()).keys(f"{prefix}:group:*")}
        for server in shards
    ]
    assert all(groups), groups
    assert groups[0].isdisjoint(groups[1]), groups
    assert groups[0] | groups[1] == {f"{prefix}:group:queue", f"{prefix}:group:user-messages"}
