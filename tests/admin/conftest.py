"""Fixtures for the admin tests: a staff browser, entries in every state, and a record of
what services published, so each test can check that an admin change was broadcast."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse

from queue_app import broadcast
from queue_app.models import EntryStatus, QueueEntry, QueueEvent, QueueState
from queue_app.services import line, transfers
from tests.queue_helpers import fail_transfer, wait_to_retry

WORKER = "test-worker"
CHANGELIST = "admin:queue_app_queueentry_changelist"


@pytest.fixture(autouse=True)
def _quiet_queue(settings):
    # No Celery messages from services, and room for every running entry the tests make.
    settings.QUEUE_DISPATCH_ON_COMMIT = False
    settings.QUEUE_CONCURRENCY = 50


@pytest.fixture
def published(monkeypatch) -> list[int]:
    """The seq of every event services published after commit, in order."""
    sent: list[int] = []
    monkeypatch.setattr(broadcast, "publish_event", lambda event: sent.append(event.seq))
    return sent


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def make_entry(make_meeting) -> Callable[..., QueueEntry]:
    """An entry of `owner` in `status`, brought there through services like a real one."""

    def make(owner, title: str | None = None, status: str = EntryStatus.QUEUED) -> QueueEntry:
        entry = line.entry_enqueue(meeting=make_meeting(owner, title))
        if status == EntryStatus.QUEUED:
            return entry
        if status == EntryStatus.CANCELLED:
            return line.entry_cancel(entry_id=entry.pk)
        line.entry_move(entry_id=entry.pk, position="top")  # so claim_next takes this one
        claimed = transfers.transfer_claim_next(worker=WORKER)
        assert claimed is not None and claimed.pk == entry.pk
        if status == EntryStatus.COMPLETED:
            transfers.transfer_complete(
                entry_id=entry.pk, worker=WORKER, result_url="https://x.test/v"
            )
        elif status == EntryStatus.FAILED:
            fail_transfer(entry_id=entry.pk, worker=WORKER, error="Fathom answered 404")
        elif status == EntryStatus.RETRYING:
            wait_to_retry(
                entry_id=entry.pk, worker=WORKER, error="Fathom answered 503", delay_seconds=600
            )
        entry.refresh_from_db()
        assert entry.status == status
        return entry

    return make


@pytest.fixture
def admin_post(django_capture_on_commit_callbacks) -> Callable[..., object]:
    """POST as a browser would, running on-commit callbacks (publishing) as a commit would."""

    def post(client: Client, url: str, data: dict | None = None, *, follow: bool = True):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, data or {}, follow=follow)

    return post


@pytest.fixture
def run_action(admin_post, staff_client) -> Callable[..., object]:
    """Post the changelist's action form, as the "Go" button does."""

    def run(action: str, entries: Iterable[QueueEntry], client: Client | None = None, **extra):
        data = {
            "action": action,
            "_selected_action": [str(entry.pk) for entry in entries],
            "index": 0,
            **extra,
        }
        return admin_post(client or staff_client, reverse(CHANGELIST), data)

    return run


def last_seq() -> int:
    state = QueueState.objects.filter(pk=1).first()
    return state.last_seq if state else 0


def events_since(seq: int) -> list[QueueEvent]:
    """Events appended after `seq`, checked to be numbered without a gap."""
    events = list(QueueEvent.objects.filter(seq__gt=seq).order_by("seq"))
    assert [event.seq for event in events] == list(range(seq + 1, seq + 1 + len(events)))
    assert last_seq() == seq + len(events)
    return events


_MESSAGE = re.compile(r'<li class="(\w+)">(.*?)</li>', re.S)


def page_messages(response) -> list[tuple[str, str]]:
    """(level, text) of each admin message on the page."""
    content = response.content.decode()
    block = re.search(r'<ul class="messagelist">(.*?)</ul>', content, re.S)
    if not block:
        return []
    return [(level, html.unescape(text).strip()) for level, text in _MESSAGE.findall(block[1])]


class _ResultTable(HTMLParser):
    """Reads the changelist's result table into one {column: text} dict per row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self._in_body = False
        self._column: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append({})
        elif self._in_body and tag in ("td", "th"):
            classes = (attrs.get("class") or "").split()
            fields = [c.removeprefix("field-") for c in classes if c.startswith("field-")]
            self._column = fields[0] if fields else None
            if self._column:
                self.rows[-1][self._column] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th"):
            self._column = None

    def handle_data(self, data: str) -> None:
        if self._column:
            self.rows[-1][self._column] += data.strip()


def result_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200
    parser = _ResultTable()
    parser.feed(response.content.decode())
    return parser.rows


def readonly_value(content: str, field: str) -> str:
    """The text of a read-only field on an admin detail page."""
    match = re.search(rf'field-{field}\b.*?<div class="readonly">(.*?)</div>', content, re.S)
    assert match, f"no read-only field {field!r} on the page"
    return html.unescape(re.sub(r"<[^>]+>", "", match[1])).strip()
