"""Real processes for integration and browser tests: daphne, a Celery worker and the
Fathom sandbox on the test database (a pytest plugin: tests/conftest.py loads it).

They are started once per session, for every test directory alike (two workers on one
broker would take each other's tasks), against the test database pytest-django created;
tests that use them need `transactional_db` so that what they write is committed and
visible to the other processes.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings as django_settings
from django.db import connection

from devtools import processes
from devtools.processes import LoggedProcess
from fathom_sandbox.testing import SandboxProcess

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = Path(os.environ.get("VAR_DIR", ROOT / "var")) / "test-logs"


# The test worker: two processes, none of the cluster chatter tests do not need; by a name
# of its own, so that wait_until_idle() asks it alone and has its answer without waiting
# out the broadcast (each broker the tests use has this one worker).
TEST_WORKER_NODE = "fathomloom-test@localhost"
CELERY_WORKER = [
    sys.executable,
    "-m",
    "celery",
    "-A",
    "fathomloom",
    "worker",
    "--loglevel=INFO",
    "--concurrency=2",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
    f"--hostname={TEST_WORKER_NODE}",
]


def database_url(settings_dict: dict) -> str:
    """DATABASE_URL naming the test database, for the processes the tests start."""
    if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{settings_dict['NAME']}"


# What the processes the tests start run with: the sandbox for Fathom, and timings
# short enough that retries, heartbeats and the lease reaper happen within a test.
FAST_TIMINGS = {
    "QUEUE_RETRY_BASE_SECONDS": "0.5",
    "QUEUE_HEARTBEAT_SECONDS": "0.5",
    "QUEUE_LEASE_SECONDS": "4",
    "QUEUE_REAPER_SECONDS": "1",
    "QUEUE_DISPATCH_TICK_SECONDS": "2",
    "FATHOM_POLL_INTERVAL_SECONDS": "0.2",
    "FATHOM_API_CALLS_PER_MINUTE": "6000",
    "FATHOM_DOWNLOADS_PER_MINUTE": "6000",
}


@pytest.fixture(scope="session")
def fathom_sandbox() -> Iterator[SandboxProcess]:
    """The local Fathom, one process for the session, with limits that tests never hit."""
    with SandboxProcess("--rate-limit", "100000", "--download-limit", "100000") as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def process_env(django_db_setup, django_db_blocker, fathom_sandbox) -> dict[str, str]:
    with django_db_blocker.unblock():
        url = database_url(connection.settings_dict)
    # The session's processes count their metrics together there, as a stack.py run's
    # do (prometheus-client's multiprocess mode); emptied, for this session's alone.
    metrics_dir = LOG_DIR.parent / "test-prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env = dict(os.environ)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    env.update(
        DATABASE_URL=url,
        # The test settings (fathomloom.settings.test), as here: the same fixed SECRET_KEY
        # and CREDENTIAL_ENCRYPTION_KEYS, so the processes decrypt what the tests stored.
        DJANGO_SETTINGS_MODULE=django_settings.SETTINGS_MODULE,
        PYTHONUNBUFFERED="1",
        FATHOM_API_BASE_URL=fathom_sandbox.base_url,
        MEDIA_ROOT=str(LOG_DIR.parent / "test-media"),
        PUBLIC_BASE_URL="http://testserver",
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(LOG_DIR.parent / "test-mail"),
        **FAST_TIMINGS,
    )
    return env


@pytest.fixture
def sandbox(fathom_sandbox, settings) -> Iterator[SandboxProcess]:
    """The session's sandbox, with no faults and an empty request log; this process's
    settings point at it too (key checks and syncs run here)."""
    settings.FATHOM_API_BASE_URL = fathom_sandbox.base_url
    settings.FATHOM_API_CALLS_PER_MINUTE = int(FAST_TIMINGS["FATHOM_API_CALLS_PER_MINUTE"])
    settings.FATHOM_DOWNLOADS_PER_MINUTE = int(FAST_TIMINGS["FATHOM_DOWNLOADS_PER_MINUTE"])
    control = fathom_sandbox.control
    control.clear_faults()
    control.clear_requests()
    yield fathom_sandbox
    control.clear_faults()


@pytest.fixture
def connect_fathom(sandbox):
    """Connect a user's Fathom account (a sandbox key) and import their meetings."""
    from queue_app.accounts import fathom_account_set_key
    from queue_app.importing import meetings_sync
    from queue_app.models import Meeting

    def connect(user, api_key: str) -> dict[int, Meeting]:
        fathom_account_set_key(user=user, api_key=api_key)
        meetings_sync(user=user)
        return {m.recording_id: m for m in Meeting.objects.filter(owner=user)}

    return connect


class Process(LoggedProcess):
    """A child process whose output goes to var/test-logs/NAME.log and can be waited on."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        super().__init__(name, args, env, log_dir=LOG_DIR, cwd=ROOT)


def start_daphne(env: dict[str, str], name: str = "daphne") -> tuple[LoggedProcess, str]:
    process, port = processes.start_daphne(env, name, log_dir=LOG_DIR, cwd=ROOT)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def live_server_url(process_env) -> Iterator[str]:
    """A daphne process serving the project; yields its base URL."""
    process, base_url = start_daphne(process_env)
    yield base_url
    process.stop()


def wait_until_idle(timeout: float = 30) -> None:
    """Wait until the test worker has no task running, reserved or scheduled.

    A test's last task (a dispatch after a completion, a retry's countdown) must not run
    while pytest-django empties the database, or against the next test's rows.
    """
    from fathomloom.celery import app

    deadline = time.monotonic() + timeout
    busy: list = []
    while time.monotonic() < deadline:
        # A loaded machine answers slowly; with `limit`, the worker's answer ends the wait
        # (else each question waits out its whole timeout: 3 s for every test's teardown).
        inspect = app.control.inspect(destination=[TEST_WORKER_NODE], limit=1, timeout=1.0)
        busy = [inspect.active(), inspect.reserved(), inspect.scheduled()]
        if all(reply is not None and not any(reply.values()) for reply in busy):
            return
        time.sleep(0.2)
    # None: no answer to the control message; else the tasks (active, reserved, scheduled).
    raise RuntimeError(f"the Celery worker did not become idle: {busy}")


@pytest.fixture
def celery_worker(_celery_worker_process, transactional_db) -> Iterator[Process]:
    """The session's Celery worker; after the test, waits until it is idle."""
    yield _celery_worker_process
    wait_until_idle()


@pytest.fixture(scope="session")
def _celery_worker_process(process_env) -> Iterator[Process]:
    """A real Celery worker (prefork, 2 processes) consuming the test broker."""
    from fathomloom.celery import app

    app.control.purge()  # tasks left in the test broker by an earlier, interrupted run
    worker = Process("celery-worker", CELERY_WORKER, process_env)
    try:
        worker.wait_for_output(r"ready\.", timeout=60)
    except RuntimeError:
        worker.stop()
        raise
    yield worker
    worker.stop()


def login(base_url: str, username: str, password: str) -> httpx.Client:
    """Sign in through Django's login page, as a browser would; the client keeps the cookies."""
    client = httpx.Client(base_url=base_url, timeout=10)
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, "the login page has no CSRF token"
    response = client.post(
        "/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
    )
    assert response.status_code == 302, f"login failed for {username}: {response.status_code}"
    assert "sessionid" in client.cookies
    return client


def ws_url(base_url: str, path: str = "/queue_updates") -> str:
    return base_url.replace("http://", "ws://") + path


def start_beat(name: str, env: dict[str, str], schedule: Path) -> Process:
    """A Celery beat process keeping its schedule in `schedule`, once it has started."""
    beat = Process(
        name,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "fathomloom",
            "beat",
            "--loglevel=INFO",
            "--schedule",
            str(schedule),
        ],
        env,
    )
    beat.wait_for_output(r"beat: Starting", timeout=30)
    return beat
