"""Changes ask the dispatcher for work after commit, one dispatch at a time: a burst of
changes asks once, and a change committed after the dispatcher started asks again, so
none is left unclaimed until the next beat tick (services.changes.request_dispatch)."""

from __future__ import annotations

import time

import pytest

from queue_app import tasks
from queue_app.models import EntryStatus, QueueEntry
from queue_app.services import changes, line
from queue_app.services.changes import DISPATCH_TASK

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(settings, monkeypatch) -> list[str]:
    """The tasks sent to the broker, by name (sent nowhere)."""
    settings.QUEUE_DISPATCH_ON_COMMIT = True
    names: list[str] = []
    monkeypatch.setattr(changes.current_app, "send_task", lambda name, *a, **k: names.append(name))
    return names


@pytest.fixture
def enqueue(alice, make_meeting, django_capture_on_commit_callbacks):
    """enqueue() -> one of alice's meetings in line, committed (its callbacks run)."""

    def run() -> QueueEntry:
        with django_capture_on_commit_callbacks(execute=True):
            return line.entry_enqueue(meeting=make_meeting(alice))

    return run


def test_a_burst_of_changes_asks_for_one_dispatch(enqueue, sent) -> None:
    for _ in range(5):
        enqueue()
    assert sent == [DISPATCH_TASK]


def test_a_change_after_the_dispatcher_started_asks_again_and_it_claims_both(
    enqueue, sent, settings, monkeypatch
) -> None:
    settings.QUEUE_CONCURRENCY = 0  # the dispatch below claims nothing: only its start counts
    enqueue()
    tasks.dispatch()  # the dispatch asked for runs
    enqueue()
    assert sent == [DISPATCH_TASK, DISPATCH_TASK]

    # Entries committed while a dispatch was asked for and not started are its to claim.
    settings.QUEUE_CONCURRENCY = 10
    claimed: list[str] = []
    monkeypatch.setattr(tasks.transfer, "delay", claimed.append)
    assert tasks.dispatch() == 2
    assert set(claimed) == {str(pk) for pk in QueueEntry.objects.values_list("pk", flat=True)}
    assert not QueueEntry.objects.filter(status=EntryStatus.QUEUED).exists()


def test_a_dispatch_that_could_not_be_sent_is_asked_for_by_the_next_change(
    enqueue, sent, monkeypatch
) -> None:
    def broker_down(name, *args, **kwargs):
        raise ConnectionError("broker down")

    with monkeypatch.context() as down:
        down.setattr(changes.current_app, "send_task", broker_down)
        enqueue()  # committed all the same; the send failed
    enqueue()
    assert sent == [DISPATCH_TASK]


def test_without_the_cache_every_change_asks(enqueue, sent, monkeypatch) -> None:
    def cache_down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(changes.cache, "add", cache_down)
    monkeypatch.setattr(changes.cache, "delete", cache_down)
    monkeypatch.setattr(tasks.transfer, "delay", lambda entry_id: None)
    enqueue()
    enqueue()
    assert tasks.dispatch() == 2  # its start cannot clear the flag either: it claims on
    assert sent == [DISPATCH_TASK, DISPATCH_TASK]


def test_a_flag_whose_dispatch_never_started_expires(enqueue, sent, monkeypatch) -> None:
    """A dispatch task lost on the way (its worker gone before it ran) holds nobody up
    longer than the flag lives: then the next change asks again."""
    monkeypatch.setattr(changes, "DISPATCH_ASKED_SECONDS", 1)
    enqueue()
    enqueue()
    assert sent == [DISPATCH_TASK]
    time.sleep(1.2)
    enqueue()
    assert sent == [DISPATCH_TASK, DISPATCH_TASK]
