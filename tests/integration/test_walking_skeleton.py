"""One meeting through every part: HTTP login, socket, service, Celery worker, channel layer."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from websockets.asyncio.client import connect

from queue_app.services import line
from realtime import publisher
from tests.helpers import PASSWORD
from tests.processes import login, ws_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def enqueue_and_close(meeting) -> None:
    """Enqueue from a worker thread, closing that thread's connection (it outlives the test)."""
    try:
        line.entry_enqueue(meeting=meeting)
    finally:
        connection.close()


async def receive_json(socket, timeout: float = 20) -> dict:
    """The next message other than a ProgressUpdate (those are checked elsewhere)."""
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), timeout))
        if message["type"] != "ProgressUpdate":
            return message


def test_worker_events_reach_the_socket_in_order(
    live_server_url, celery_worker, make_user, connect_fathom, monkeypatch
):
    alice = make_user("alice")
    meeting = connect_fathom(alice, "sandbox-key-alice")[1001]
    session = login(live_server_url, "alice", PASSWORD)

    # Record what this (the test) process publishes, to tell its events from the worker's.
    published_here: list[str] = []
    real_publish = publisher.publish_to_group

    def spy(group, message):
        published_here.append(message["event"]["update_type"])
        return real_publish(group, message)

    monkeypatch.setattr(publisher, "publish_to_group", spy)

    async def scenario() -> list[dict]:
        async with connect(
            ws_url(live_server_url),
            additional_headers={"Cookie": f"sessionid={session.cookies['sessionid']}"},
            origin=live_server_url,
        ) as socket:
            snapshot = await receive_json(socket)
            assert snapshot["type"] == "QueueSnapshot"
            assert snapshot["queue"] == []
            await sync_to_async(enqueue_and_close)(meeting)
            return [await receive_json(socket) for _ in range(3)]

    events = asyncio.run(scenario())

    assert [e["update_type"] for e in events] == ["meeting_added", "task_started", "task_completed"]
    assert all(e["type"] == "QueueUpdate" for e in events)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert published_here == ["meeting_added"], "task_started/completed must come from the worker"
    added, _started, completed = events
    assert added["queue"][0]["title"] == str(meeting)
    assert added["global_position"] == 1
    assert added["affected_user_id"] == str(alice.pk)
    assert completed["queue"][0]["status"] == "completed"
    assert "/share/" in completed["queue"][0]["result_url"]
    for event in events:
        assert set(event) >= {
            "type",
            "update_type",
            "seq",
            "queue",
            "affected_user_id",
            "global_position",
            "timestamp",
        }


def test_anonymous_socket_is_closed_with_4401(live_server_url):
    async def scenario() -> int:
        async with connect(ws_url(live_server_url), origin=live_server_url) as socket:
            await asyncio.wait_for(socket.wait_closed(), 10)
            return socket.close_code

    assert asyncio.run(scenario()) == 4401
