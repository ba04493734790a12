"""GET /metrics adds up every process's counts (prometheus-client's multiprocess mode):
transfers done by a real Celery worker's children, Fathom calls they made, events they
published, and sockets of a real daphne; parsed with prometheus-client's parser."""

from __future__ import annotations

import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from queue_app.models import EntryStatus
from queue_app.services import line
from tests.helpers import PASSWORD
from tests.integration.wsclient import open_socket
from tests.processes import login, start_daphne, ws_url
from tests.queue_helpers import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def scrape(session) -> dict[tuple[str, tuple], float]:
    response = session.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_until(session, check, timeout: float = 10):
    """Scrape until `check(samples)` holds (a worker writes its counts as it goes)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(session)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def test_transfers_by_worker_processes_and_live_sockets_are_counted(
    live_server_url, celery_worker, sandbox, make_user, connect_fathom
):
    make_user("admin", is_staff=True)
    alice = make_user("alice")
    meetings = connect_fathom(alice, "sandbox-key-alice")
    operator = login(live_server_url, "admin", PASSWORD)
    before = scrape(operator)
    connections = value(before, "fathomloom_websocket_connections")
    fanouts = value(before, "fathomloom_fanout_duration_seconds_count")

    sockets = [open_socket(live_server_url, session=operator) for _ in range(3)]
    try:
        for each in sockets:
            assert each.recv()["type"] == "QueueSnapshot"
        opened = scrape(operator)
        assert value(opened, "fathomloom_websocket_connections") == connections + 3

        entries = [line.entry_enqueue(meeting=meetings[i]) for i in (1001, 1002)]
        done = wait_for([e.id for e in entries])
        assert all(e.status == EntryStatus.COMPLETED for e in done.values())
        # Each socket is sent both completions (daphne's hub has fanned them out).
        for each in sockets:
            completions = 0
            while completions < 2:
                completions += each.recv_update()["update_type"] == "task_completed"
        after = scrape_until(
            operator,
            lambda s: (
                value(s, "fathomloom_transfers_total", outcome="completed")
                >= value(before, "fathomloom_transfers_total", outcome="completed") + 2
            ),
        )
    finally:
        for each in sockets:
            each.close()

    # From the database: two more completed transfers.
    completed = "fathomloom_transfers_total"
    assert (
        value(after, completed, outcome="completed") - value(before, completed, outcome="completed")
        == 2
    )
    # Counted in the worker's child processes, not in this one or daphne: the calls to
    # Fathom for each transfer (a download requested per recording) and the events the
    # worker published (task_started and task_completed for each).
    requests = "fathomloom_fathom_requests_total"
    download = {"endpoint": "/recordings/{id}/download", "status": "202"}
    assert value(after, requests, **download) - value(before, requests, **download) == 2
    published = "fathomloom_events_published_total"
    assert (
        value(after, published, type="queue.event") - value(before, published, type="queue.event")
        >= 4
    )
    # daphne's hub fanned out each of those events (and the two enqueues) to its sockets.
    assert value(after, "fathomloom_fanout_duration_seconds_count") - fanouts >= 6
    assert value(after, "fathomloom_fanout_duration_seconds_sum") > 0

    # Closed sockets stop counting.
    closed = scrape_until(
        operator, lambda s: value(s, "fathomloom_websocket_connections") == connections
    )
    assert value(closed, "fathomloom_websocket_connections") == connections


def test_server_closes_are_counted_by_code(live_server_url, transactional_db, make_user):
    make_user("admin", is_staff=True)
    operator = login(live_server_url, "admin", PASSWORD)
    closes = "fathomloom_websocket_closes_total"
    before = scrape(operator)

    anonymous = open_socket(live_server_url)  # not signed in: refused with 4401
    assert anonymous.close_code() == 4401
    flooding = open_socket(live_server_url, session=operator)
    flooding.recv()
    for _ in range(200):  # far past 20 a second and a burst of 50: closed with 4029
        flooding.send({"type": "ping"})
    assert flooding.close_code() == 4029

    after = scrape(operator)
    assert value(after, closes, code="4401") - value(before, closes, code="4401") == 1
    assert value(after, closes, code="4029") - value(before, closes, code="4029") == 1


def test_a_slow_client_close_is_counted_by_its_code(
    process_env, transactional_db, make_user, make_meeting, settings
):
    settings.QUEUE_DISPATCH_ON_COMMIT = False  # nothing here needs a worker
    make_user("admin", is_staff=True)
    alice = make_user("alice")
    # A daphne of its own with small buffers (as in test_live_updates), writing its counts
    # to the session's directory like every other process: any web process serves them.
    process, base_url = start_daphne(
        {
            **process_env,
            "REALTIME_MAX_BACKLOG_BYTES": str(128 * 1024),
            "REALTIME_SOCKET_SNDBUF": str(32 * 1024),
        },
        name="daphne-slow-metrics",
    )
    try:
        operator = login(base_url, "admin", PASSWORD)
        closes = "fathomloom_websocket_closes_total"
        before = scrape(operator)
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", int(base_url.rsplit(":", 1)[1])))
        stalled = connect(
            ws_url(base_url),
            sock=raw,
            origin=base_url,
            additional_headers={"Cookie": f"sessionid={operator.cookies['sessionid']}"},
            max_queue=1,
            proxy=None,
            legacy=True,
        )
        with stalled:
            for i in range(400):  # never read: the server closes it as too slow (4008)
                line.entry_enqueue(meeting=make_meeting(alice, f"{i:04d} " + "x" * 480))
            after = scrape_until(
                operator,
                lambda s: value(s, closes, code="4008") > value(before, closes, code="4008"),
            )
        assert value(after, closes, code="4008") - value(before, closes, code="4008") == 1
    finally:
        process.stop()
