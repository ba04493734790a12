"""Two machines sharing nothing but the database and a bucket: daphne and a Celery worker,
real processes, each with a MEDIA_ROOT of its own, recordings in S3 (moto's server).

A transfer done by the worker is served by the web process: its share link plays the
bytes Fathom (the sandbox) has, whole and by ranges, and neither disk keeps a copy.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from devtools import processes
from devtools.processes import LoggedProcess
from queue_app.integrations.recordings import recording_name
from queue_app.models import EntryStatus, QueueEntry
from tests.helpers import PASSWORD
from tests.processes import LOG_DIR, ROOT
from tests.queue_helpers import wait_for
from tests.storage.holding_proxy import HoldingProxy

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@dataclass
class Machines:
    base_url: str
    web_media: Path
    worker_media: Path
    proxy: HoldingProxy


def celery(name: str, command: str, *args: str, env: dict[str, str]) -> LoggedProcess:
    process = LoggedProcess(
        name,
        [sys.executable, "-m", "celery", "-A", "fathomloom", command, "--loglevel=INFO", *args],
        env,
        log_dir=LOG_DIR,
        cwd=ROOT,
    )
    process.wait_for_output(r"ready\." if command == "worker" else r"beat: Starting", timeout=60)
    return process


@pytest.fixture
def two_machines(process_env, s3_server, bucket, sandbox, tmp_path) -> Iterator[Machines]:
    """daphne, a Celery worker and beat on their own broker (a private Redis: the session's
    worker must not take these transfers), recordings in `bucket`, reached through a
    proxy that a test can make keep an answer back."""
    from tests.faults.servers import PrivateRedis

    try:
        redis = PrivateRedis()
    except FileNotFoundError as missing:
        pytest.skip(f"the two-machine test needs a private Redis: {missing}")
    redis.start()
    proxy = HoldingProxy(int(urlsplit(s3_server.endpoint_url).port or 0))
    started: list[LoggedProcess] = []
    try:
        common = {
            **process_env,
            **s3_server.env(bucket.name),
            "AWS_S3_ENDPOINT_URL": proxy.url,
            "REDIS_URL": redis.url(0),
            "CELERY_BROKER_URL": redis.url(0),
            "CACHE_URL": redis.url(0),
        }
        machines = Machines("", tmp_path / "web-media", tmp_path / "worker-media", proxy)
        web, port = processes.start_daphne(
            {**common, "MEDIA_ROOT": str(machines.web_media)},
            "storage-web",
            log_dir=LOG_DIR,
            cwd=ROOT,
        )
        started.append(web)
        machines.base_url = f"http://127.0.0.1:{port}"
        worker_env = {**common, "MEDIA_ROOT": str(machines.worker_media)}
        started.append(
            celery(
                "storage-worker",
                "worker",
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                env=worker_env,
            )
        )
        # The lease reaper, for a worker that dies.
        schedule = str(tmp_path / "beat-schedule")
        started.append(celery("storage-beat", "beat", "--schedule", schedule, env=worker_env))
        yield machines
    finally:
        for process in reversed(started):  # beat first, then the worker finishes its task
            process.stop()
        proxy.close()
        redis.close()


def enqueue(base_url: str, meetings: list) -> list[str]:
    """Queue meetings as alice through the web process's API (so its own broker gets the
    dispatch); the new entries' ids."""
    with httpx.Client(base_url=base_url, timeout=10) as api:
        token = api.post("/api/auth/token", json={"username": "alice", "password": PASSWORD})
        api.headers["Authorization"] = f"Token {token.json()['token']}"
        ids = []
        for meeting in meetings:
            response = api.post("/api/queue", json={"meeting_id": meeting.id})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
    return ids


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_the_worker_uploads_and_the_web_process_serves_the_same_bytes(
    two_machines, bucket, sandbox, make_user, connect_fathom
):
    alice = make_user("alice")
    meetings = connect_fathom(alice, "sandbox-key-alice")
    chosen = [meetings[1001], meetings[1002]]
    base = two_machines.base_url
    ids = enqueue(base, chosen)
    done = wait_for(ids, timeout=90)
    with httpx.Client(timeout=10, follow_redirects=True) as viewer:
        for entry_id, meeting in zip(ids, chosen, strict=True):
            entry = done[entry_id]
            assert entry.status == EntryStatus.COMPLETED, entry.last_error
            expected = sandbox.control.recording_bytes(meeting.recording_id)
            link = base + urlsplit(entry.result_url).path
            whole = viewer.get(link)
            assert whole.status_code == 200
            assert whole.content == expected
            # The web process sent the player to the bucket, which answers ranges itself.
            assert whole.history[0].status_code == 302
            assert whole.url.netloc.decode() == urlsplit(two_machines.proxy.url).netloc
            ranged = viewer.get(link, headers={"Range": "bytes=100-1099"})
            assert ranged.status_code == 206
            assert ranged.headers["Content-Range"] == f"bytes 100-1099/{len(expected)}"
            assert ranged.content == expected[100:1100]
            tail = viewer.get(link, headers={"Range": "bytes=-64"})
            assert tail.content == expected[-64:]

    tokens = [urlsplit(done[i].result_url).path.rsplit("/", 1)[1] for i in ids]
    assert sorted(bucket.keys()) == sorted(recording_name(t) for t in tokens)
    assert bucket.unfinished_uploads() == []
    # Nothing on either machine's disk: the worker's copy was a temporary file.
    assert files_under(two_machines.web_media) == []
    assert files_under(two_machines.worker_media) == []


def test_a_worker_killed_after_its_upload_leaves_one_object_once_retried(
    two_machines, bucket, sandbox, make_user, connect_fathom
):
    alice = make_user("alice")
    meeting = connect_fathom(alice, "sandbox-key-alice")[1003]
    # The bucket stores the first upload, but its answer never reaches the worker, which
    # is killed while it waits: the entry was never marked completed.
    two_machines.proxy.hold_next_upload.set()
    (entry_id,) = enqueue(two_machines.base_url, [meeting])
    deadline = time.monotonic() + 30
    while not (two_machines.proxy.holding.is_set() and bucket.keys()):
        assert time.monotonic() < deadline, "the first upload never reached the bucket"
        time.sleep(0.1)
    row = QueueEntry.objects.get(pk=entry_id)
    assert (row.status, row.stage) == (EntryStatus.RUNNING, "uploading")
    os.kill(int(row.worker.rsplit(":", 1)[1]), signal.SIGKILL)

    final = wait_for([entry_id], timeout=90)[entry_id]
    assert final.status == EntryStatus.COMPLETED, final.last_error
    assert final.attempts == 2 and final.worker != row.worker
    # The retry wrote the same object again: one recording in the bucket, the shared one.
    token = urlsplit(final.result_url).path.rsplit("/", 1)[1]
    assert bucket.keys() == [recording_name(token)]
    assert bucket.unfinished_uploads() == []
    link = two_machines.base_url + urlsplit(final.result_url).path
    video = httpx.get(link, follow_redirects=True, timeout=10)
    assert video.content == sandbox.control.recording_bytes(1003)
