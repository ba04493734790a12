"""Fathom pushing to us, with real processes: the sandbox POSTs signed webhooks and
download callbacks to a real daphne; a real Celery worker transfers what was queued.

- a new meeting -> Fathom's webhook -> imported -> queued (auto-queue) -> transferred;
- a download's callback wakes the transfer: no status polls at all;
- a callback that never comes: the transfer polls after FATHOM_CALLBACK_WAIT_SECONDS.
"""

from __future__ import annotations

import random
import time
from urllib.parse import urlsplit

import httpx
import pytest

from queue_app import accounts, importing
from queue_app.models import EntryStatus, FathomAccount, Meeting, QueueEntry
from queue_app.services import line, transfers
from queue_app.transfer import run_transfer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def new_key(sandbox) -> str:
    key = f"sandbox-key-e2e-{random.randrange(10**9)}"
    sandbox.control.add_key(key)
    return key


def new_recording_id() -> int:
    return random.randrange(900_000_000, 999_999_999)


@pytest.fixture
def connected(sandbox, make_user, settings, live_server_url):
    """Alice connected to a fresh sandbox key, her webhook registered at the live daphne;
    disconnected afterwards, which deletes the webhook in the sandbox."""
    settings.PUBLIC_BASE_URL = live_server_url
    alice = make_user("alice")
    key = new_key(sandbox)
    accounts.fathom_account_set_key(user=alice, api_key=key)
    yield alice, key
    accounts.fathom_account_disconnect(user=alice)


def wait_until(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_a_new_meeting_is_announced_imported_queued_and_transferred(
    connected, sandbox, celery_worker, live_server_url
):
    alice, key = connected
    account = FathomAccount.objects.get(user=alice)
    assert account.fathom_webhook_id  # registered when connected
    accounts.fathom_account_set_auto_queue(user=alice, auto_queue=True)
    recording_id = new_recording_id()

    sandbox.control.add_meeting(key, recording_id, title="Announced", media="recording-3.mp4")

    entry = wait_until(
        lambda: QueueEntry.objects.filter(
            meeting__recording_id=recording_id, status=EntryStatus.COMPLETED
        ).first(),
        timeout=60,
        what="the announced meeting's transfer",
    )
    meeting = Meeting.objects.get(recording_id=recording_id)
    assert (meeting.owner, meeting.title) == (alice, "Announced")
    assert meeting.summary.startswith("## Summary")  # include_summary on the webhook
    assert meeting.transcript and meeting.transcript[0]["speaker"]
    assert meeting.media_kind == "video"
    share = httpx.get(live_server_url + urlsplit(entry.result_url).path, timeout=10)
    assert share.content == sandbox.control.recording_bytes(recording_id)
    webhook_posts = [d for d in sandbox.control.deliveries() if d["kind"] == "webhook"]
    assert [d["status"] for d in webhook_posts if account.webhook_token in d["url"]] == [200]


@pytest.fixture
def begin(connected, sandbox, settings, tmp_path):
    """Begins an entry of a new recording of Alice's, its transfer to be run here."""
    alice, key = connected
    settings.QUEUE_DISPATCH_ON_COMMIT = False  # no worker takes it: this test runs it
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FATHOM_DOWNLOAD_CALLBACKS = True
    settings.FATHOM_POLL_INTERVAL_SECONDS = 0.2

    def make(**fields) -> tuple[QueueEntry, int]:
        recording_id = new_recording_id()
        sandbox.control.add_meeting(
            key, recording_id, notify=False, media="recording-1.mp4", **fields
        )
        importing.meetings_sync(user=alice)
        meeting = Meeting.objects.get(owner=alice, recording_id=recording_id)
        entry = line.entry_enqueue(meeting=meeting)
        assert transfers.transfer_claim_next().pk == entry.pk  # claimed, then begun
        assert transfers.transfer_begin(entry_id=entry.pk, worker="test-worker")
        return entry, recording_id

    return make


@pytest.fixture
def begun(begin):
    return begin()


def status_polls(sandbox, recording_id: int) -> list[dict]:
    return [
        r
        for r in sandbox.control.requests()
        if f"/recordings/{recording_id}/downloads/" in r["path"]
    ]


def test_the_callback_wakes_the_transfer_and_nothing_is_polled(begun, sandbox, settings):
    entry, recording_id = begun
    settings.FATHOM_CALLBACK_WAIT_SECONDS = 30

    started = time.monotonic()
    done = run_transfer(entry_id=entry.pk, worker="test-worker")

    assert time.monotonic() - started < 15
    assert done.bytes_moved == len(sandbox.control.recording_bytes(recording_id))
    assert status_polls(sandbox, recording_id) == []
    posted = [d for d in sandbox.control.deliveries() if d["kind"] == "download"]
    assert any(d["status"] == 200 for d in posted)
    request = next(
        r
        for r in sandbox.control.requests()
        if r["path"].endswith(f"/recordings/{recording_id}/download")
    )
    assert request["status"] == 202


def test_a_callback_that_never_comes_falls_back_to_polling(begun, sandbox, settings):
    entry, recording_id = begun
    settings.FATHOM_CALLBACK_WAIT_SECONDS = 1.0
    sandbox.control.add_fault(
        "drop_callback", match=f"/recordings/{recording_id}/download", method="POST"
    )

    done = run_transfer(entry_id=entry.pk, worker="test-worker")

    assert done.bytes_moved == len(sandbox.control.recording_bytes(recording_id))
    polls = status_polls(sandbox, recording_id)
    assert polls, "the transfer polled once no callback came"
    request = next(
        r
        for r in sandbox.control.requests()
        if r["path"].endswith(f"/recordings/{recording_id}/download")
    )
    assert polls[0]["time"] - request["time"] >= 1.0  # it waited for the callback first


def test_an_audio_only_recording_moves_its_audio_and_says_so(begin, sandbox, settings):
    settings.FATHOM_CALLBACK_WAIT_SECONDS = 30
    entry, recording_id = begin(audio_only=True)

    done = run_transfer(entry_id=entry.pk, worker="test-worker")

    assert done.media_kind == "audio"
    assert Meeting.objects.get(pk=entry.meeting_id).media_kind == "audio"
    assert done.bytes_moved == len(sandbox.control.recording_bytes(recording_id))
    assert status_polls(sandbox, recording_id) == []  # completed in the first answer


@pytest.mark.parametrize(
    ("fields", "kind", "words"),
    [
        ({"limited_access": True}, "fathom_no_download_access", "limited access"),
        ({"no_media": True}, "fathom_no_media", "nothing to transfer"),
    ],
)
def test_no_access_and_no_media_fail_for_good_with_a_reason(begin, fields, kind, words):
    from queue_app.transfer import TransferFailed

    entry, _ = begin(**fields)
    with pytest.raises(TransferFailed) as caught:
        run_transfer(entry_id=entry.pk, worker="test-worker")
    failure = caught.value.failure
    assert (failure.transient, failure.kind) == (False, kind)
    assert words in failure.reason
