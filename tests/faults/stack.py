"""The whole service on private servers, for the fault suite: daphne, a Celery worker and
beat, on a PostgreSQL and a Redis of its own (tests/faults/servers.py), with the Fathom
sandbox for Fathom.

tests/processes.py runs the same processes for the integration tests, on pytest-django's
test database and the shared Redis; those must never be restarted. Here nothing is
shared, so a test may kill, stop and restart any part. The test process reads the
database with psycopg (its Django connection stays on the ordinary test database) and
drives the service as clients do: the HTTP API, and sockets that resume after a drop.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from devtools import processes
from devtools.processes import LoggedProcess
from fathom_sandbox.testing import SandboxProcess
from tests.faults.servers import PrivatePostgres, PrivateRedis
from tests.helpers import PASSWORD
from tests.processes import FAST_TIMINGS, LOG_DIR

ROOT = Path(__file__).resolve().parents[2]
FAULT_LOG_DIR = LOG_DIR / "faults"
WORKER_STOPPED = "The worker stopped responding."
FINISHED = {"completed", "failed", "cancelled"}


class Stack:
    """Servers and processes; `start()` then `stop()`. The sandbox is the caller's."""

    def __init__(self, sandbox: SandboxProcess) -> None:
        self.sandbox = sandbox
        self.folder = Path(tempfile.mkdtemp(prefix="fathomloom-faults-"))
        self.redis = PrivateRedis()
        self.postgres = PrivatePostgres()
        self.database_url = self.postgres.url("fathomloom")
        self.env: dict[str, str] = {}
        self.daphne: LoggedProcess | None = None
        self.worker: LoggedProcess | None = None
        self.beat: LoggedProcess | None = None
        self.base_url = ""
        self.tokens: dict[str, str] = {}

    # --- start and stop ---------------------------------------------------------------------

    def start(self) -> Stack:
        self.redis.start()
        self.postgres.start()
        self.postgres.create_database("fathomloom")
        redis_url = self.redis.url(0)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "fathomloom.settings.test",
            "PYTHONUNBUFFERED": "1",
            "VAR_DIR": str(self.folder),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": redis_url,
            "CACHE_URL": redis_url,
            "CHANNEL_LAYER_PREFIX": "fathomloom-faults",
            "FATHOM_API_BASE_URL": self.sandbox.base_url,
            "MEDIA_ROOT": str(self.folder / "media"),
            "PUBLIC_BASE_URL": "http://testserver",
            "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "EMAIL_FILE_PATH": str(self.folder / "mail"),
            **FAST_TIMINGS,
            # A little more than the integration tests' 4 s: a restart of a few seconds
            # must not outlast a lease that its keeper renews every half second.
            "QUEUE_LEASE_SECONDS": "6",
        }
        self.manage("migrate", "--noinput", "-v0")
        # alice and bob, their sandbox keys and their meetings (imported from the sandbox).
        self.manage("seed_demo", "--sandbox-keys", "--password", PASSWORD)
        self.daphne, port = processes.start_daphne(
            self.env, "faults-daphne", log_dir=FAULT_LOG_DIR, cwd=ROOT
        )
        self.base_url = f"http://127.0.0.1:{port}"
        self.worker = self._celery("faults-celery-worker", "worker", r"ready\.")
        self.beat = self._celery("faults-celery-beat", "beat", r"beat: Starting")
        for user in ("alice", "bob"):
            response = httpx.post(
                f"{self.base_url}/api/auth/token",
                json={"username": user, "password": PASSWORD},
                timeout=10,
            )
            response.raise_for_status()
            self.tokens[user] = response.json()["token"]
        return self

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args], env=self.env, cwd=ROOT, check=True
        )

    def _celery(self, name: str, command: str, ready: str) -> LoggedProcess:
        args = [sys.executable, "-m", "celery", "-A", "fathomloom", command, "--loglevel=INFO"]
        if command == "worker":
            args += ["--concurrency=2", "--without-gossip", "--without-mingle"]
            args += ["--without-heartbeat"]
        else:
            args += ["--schedule", str(self.folder / "beat-schedule")]
        process = LoggedProcess(name, args, self.env, log_dir=FAULT_LOG_DIR, cwd=ROOT)
        try:
            process.wait_for_output(ready, timeout=60)
        except RuntimeError:
            process.stop()
            raise
        return process

    def stop(self) -> None:
        for process in (self.beat, self.worker, self.daphne):
            if process is not None:
                process.stop()
        self.redis.close()
        self.postgres.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- the database, read directly ----------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of `sql`, on a new connection each time (PostgreSQL may have restarted)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.database_url, autocommit=True, connect_timeout=2) as db:
                    return db.execute(sql, params).fetchall()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def meeting_ids(self, user: str, recording_ids: list[int]) -> list[int]:
        rows = dict(
            self.query(
                "SELECT m.recording_id, m.id FROM queue_app_meeting m"
                " JOIN auth_user u ON u.id = m.owner_id WHERE u.username = %s",
                (user,),
            )
        )
        return [rows[recording_id] for recording_id in recording_ids]

    def entries(self, entry_ids: list[str]) -> dict[str, dict[str, Any]]:
        columns = ("id", "status", "attempts", "last_error", "worker", "stage", "result_url")
        rows = self.query(
            f"SELECT {', '.join(columns)} FROM queue_app_queueentry WHERE id::text = ANY(%s)",
            (list(entry_ids),),
        )
        return {str(row[0]): dict(zip(columns, row, strict=True)) for row in rows}

    def events(self) -> list[tuple[int, str, list[dict[str, Any]]]]:
        rows = self.query("SELECT seq, update_type, payload FROM queue_app_queueevent ORDER BY seq")
        return [
            (seq, kind, payload if isinstance(payload, list) else json.loads(payload))
            for seq, kind, payload in rows
        ]

    def last_seq(self) -> int:
        return self.query("SELECT COALESCE(MAX(seq), 0) FROM queue_app_queueevent")[0][0]

    def history(self, entry_id: str) -> list[tuple[str, dict[str, Any]]]:
        """(update_type, the entry as the event carried it) of every event about it."""
        return [
            (kind, item)
            for _, kind, payload in self.events()
            for item in payload
            if item["id"] == entry_id
        ]

    def wait_until(self, what: str, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise AssertionError(f"not within {timeout} s: {what}")

    def wait_finished(self, entry_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        self.wait_until(
            "every entry finished",
            lambda: all(e["status"] in FINISHED for e in self.entries(entry_ids).values()),
            timeout,
        )
        return self.entries(entry_ids)

    def wait_until_idle(self, timeout: float = 30) -> None:
        """Nothing queued, running or retrying: the next test starts from an empty line."""
        self.wait_until(
            "the line is empty",
            lambda: (
                not self.query(
                    "SELECT 1 FROM queue_app_queueentry"
                    " WHERE status IN ('queued', 'running', 'retrying') LIMIT 1"
                )
            ),
            timeout,
        )

    # --- clients ---------------------------------------------------------------------------

    def api(self, user: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Token {self.tokens[user]}"},
            timeout=10,
        )

    def enqueue(self, user: str, recording_ids: list[int]) -> list[str]:
        with self.api(user) as client:
            ids = []
            for meeting_id in self.meeting_ids(user, recording_ids):
                response = client.post("/api/queue", json={"meeting_id": meeting_id})
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
            return ids


@dataclass
class Call:
    at: float
    what: str
    status: int | str


@dataclass
class Outage:
    """When a part was down (monotonic seconds); 503s are expected only then."""

    started: float = float("inf")
    ended: float = float("inf")
    grace: float = 3.0

    def covers(self, at: float) -> bool:
        return self.started <= at <= self.ended + self.grace


class ApiPoller(threading.Thread):
    """GET /api/queue as a user, a few times a second, keeping every status."""

    def __init__(self, stack: Stack, user: str) -> None:
        super().__init__(daemon=True, name=f"api-poller-{user}")
        self.stack, self.user = stack, user
        self.calls: list[Call] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with self.stack.api(self.user) as client:
            while not self._halt.wait(0.2):
                try:
                    status: int | str = client.get("/api/queue").status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.calls.append(Call(time.monotonic(), "GET /api/queue", status))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


@dataclass(eq=False)  # a thread: hashed by identity
class Watcher(threading.Thread):
    """A client of the live queue: a socket that resumes with `last_seq` after any drop,
    authenticated by a one-time ticket from the API, as the pages do.

    Keeps every seq it applies, every gap it sees, every handshake refusal and close.
    """

    stack: Stack
    user: str
    seqs: list[int] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    resets: int = 0
    calls: list[Call] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)
    connections: int = 0
    last_seq: int | None = None

    def __post_init__(self) -> None:
        super().__init__(daemon=True, name=f"watcher-{self.user}")
        self._halt = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        with self.stack.api(self.user) as client:
            while not self._halt.is_set():
                self._connect_once(client)
                self._halt.wait(0.2)

    def _connect_once(self, client: httpx.Client) -> None:
        try:
            response = client.post("/api/ws-ticket")
        except httpx.HTTPError as exc:
            self.calls.append(Call(time.monotonic(), "POST /api/ws-ticket", type(exc).__name__))
            return
        self.calls.append(Call(time.monotonic(), "POST /api/ws-ticket", response.status_code))
        if response.status_code != 201:
            return
        url = processes_ws_url(self.stack.base_url) + f"?token={response.json()['ticket']}"
        if self.last_seq is not None:
            url += f"&last_seq={self.last_seq}"
        try:
            with connect(url, origin=self.stack.base_url, open_timeout=10, proxy=None) as ws:
                self.calls.append(Call(time.monotonic(), "handshake", 101))
                self.connections += 1
                while not self._halt.is_set():
                    try:
                        text = ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    self._apply(json.loads(text))
        except InvalidStatus as refused:
            self.calls.append(Call(time.monotonic(), "handshake", refused.response.status_code))
        except ConnectionClosed as closed:
            self.closes.append(closed.rcvd.code if closed.rcvd else None)
        except (OSError, TimeoutError) as exc:
            self.calls.append(Call(time.monotonic(), "handshake", type(exc).__name__))

    def _apply(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "QueueSnapshot":
            if message.get("reset"):
                self.resets += 1
            self.last_seq = message["seq"]
            self.ready.set()
        elif kind == "QueueUpdate":
            seq = message["seq"]
            if self.last_seq is not None and seq <= self.last_seq:
                return  # a replayed event this client already has
            if self.last_seq is not None and seq != self.last_seq + 1:
                self.gaps.append((self.last_seq, seq))
            self.seqs.append(seq)
            self.last_seq = seq
            self.ready.set()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def processes_ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/queue_updates"
