"""GET /metrics adds up every process's counts (prometheus-client's multiprocess mode):
transfers done by a real Celery worker's children, Fathom calls they made, events they
published, and sockets of a real daphne; parsed with prometheus-client's parser."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from queue_app.models import EntryStatus
from queue_app.services import line
from tests.helpers import PASSWORD
from tests.integration.test_pipeline import wait_for
from tests.integration.wsclient import open_socket
from tests.processes import login

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
        for socket in sockets:
            assert socket.recv()["type"] == "QueueSnapshot"
        opened = scrape(operator)
        assert value(opened, "fathomloom_websocket_connections") == connections + 3

        entries = [line.entry_enqueue(meeting=meetings[i]) for i in (1001, 1002)]
        done = wait_for([e.id for e in entries])
        assert all(e.status == EntryStatus.COMPLETED for e in done.values())
        # Each socket is sent both completions (daphne's hub has fanned them out).
        for socket in sockets:
            completions = 0
            while completions < 2:
                completions += socket.recv_update()["update_type"] == "task_completed"
        after = scrape_until(
            operator,
            lambda s: (
                value(s, "fathomloom_transfers_total", outcome="completed")
                >= value(before, "fathomloom_transfers_total", outcome="completed") + 2
            ),
        )
    finally:
        for socket in sockets:
            socket.close()

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
