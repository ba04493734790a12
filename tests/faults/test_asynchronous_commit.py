"""A PostgreSQL crash after asynchronous commits (QUEUE_SYNCHRONOUS_COMMIT=off, the
default): the queue's last changes are lost, never half of one nor one out of order, and
the service carries on from the surviving log (docs/architecture.md, "Asynchronous
commit").

A private PostgreSQL (tests/faults/servers.py), the changes made through the services in
processes of their own (tests/faults/queue_changes.py). To make the loss certain rather
than likely, the WAL writer is stopped (SIGSTOP) before the tail of changes, so that
nothing writes their commit records; then every process of the server is SIGKILLed,
and the server started again (crash recovery).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.servers import PrivatePostgres

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    try:
        # No autovacuum: its commits would flush the WAL, the tail's commits with it.
        server = PrivatePostgres(autovacuum="off")
    except FileNotFoundError as missing:
        pytest.skip(f"needs a private PostgreSQL: {missing}")
    try:
        server.start()
        server.create_database("fathomloom")
        yield server
    finally:
        server.close()


def server_processes(server: PrivatePostgres) -> tuple[int, dict[int, str]]:
    """The postmaster's pid and its children's, with their titles."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == postmaster:
            children[int(entry.name)] = title
    return postmaster, children


def crash(server: PrivatePostgres) -> None:
    """SIGKILL to the postmaster and every child: nothing is flushed or written."""
    postmaster, children = server_processes(server)
    for pid in [postmaster, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    for pid in [postmaster, *children]:
        while _state(pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.02)
    # The dead postmaster may stay a zombie here (in a container, nobody reaps it), and
    # PostgreSQL would take its lock files' pid for a running server: remove them, as
    # reaping the process would have let PostgreSQL do.
    (server.data / "postmaster.pid").unlink()
    for lock in server.folder.glob(f".s.PGSQL.{server.port}*"):
        lock.unlink()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def changes(server: PrivatePostgres, phase: str, *args: str, level: str = "off") -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fathomloom.settings.test",
        "DATABASE_URL": server.url("fathomloom"),
        "QUEUE_DISPATCH_ON_COMMIT": "0",
        "QUEUE_LEASE_SECONDS": "1",
        "CHANNEL_LAYER_PREFIX": "fathomloom-crash-test",
    }
    env.pop("QUEUE_SYNCHRONOUS_COMMIT", None)
    if level != "off":
        env["QUEUE_SYNCHRONOUS_COMMIT"] = level
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.queue_changes", phase, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def migrate(server: PrivatePostgres) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fathomloom.settings.test",
        "DATABASE_URL": server.url("fathomloom"),
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True
    )


def test_a_crash_loses_the_last_changes_and_the_service_carries_on(postgres) -> None:
    migrate(postgres)
    before = changes(postgres, "before")
    _, children = server_processes(postgres)
    (walwriter,) = [pid for pid, title in children.items() if "walwriter" in title]
    os.kill(walwriter, signal.SIGSTOP)
    try:
        tail = changes(postgres, "tail")
    finally:
        crash(postgres)
    postgres.start()  # crash recovery: replays the WAL that was written

    after = changes(postgres, "after", json.dumps(tail))
    check_carried_on(after)

    # The tail (a completion, an enqueue, a claim) is lost; everything before the worker's
    # synchronous begin survived, nothing after it: a prefix of the log, in commit order.
    assert tail["last_seq"] == tail["durable_seq"] + 3
    assert after["surviving_seq"] == tail["durable_seq"]
    # The lost claim: its worker's begin finds the entry queued, not running, and skips.
    assert after["handed_begun"] is False
    assert after["handed_status"] in ("queued", None)  # None: its enqueue was lost too
    # The lost completion: the transfer stays running until its lease runs out, then the
    # reaper puts it back in line, and it is transferred again.
    assert after["reaped"] == 1
    # The lost enqueue: the meeting is not in the line; queued again, it is accepted.
    assert after["queued_again"] == 1
    assert before["completed"] not in tail["queued"]


def check_carried_on(after: dict) -> None:
    """The line was worked off: every entry once, completed; the log contiguous and the
    counts the state keeps equal to the rows'."""
    assert after["statuses"] == ["completed"] * 9, after
    assert after["entries_per_meeting"] == 1
    assert after["seqs_contiguous"] and after["last_seq_is_the_logs"]
    assert after["completed_once"]
    assert after["counts_kept"] and after["owners_kept"]
    assert after["active"] == 0


def test_with_synchronous_commit_a_crash_loses_nothing(postgres) -> None:
    """The same crash with QUEUE_SYNCHRONOUS_COMMIT=on: each change's COMMIT returned
    after its WAL was written, so the stopped WAL writer holds nothing back."""
    migrate(postgres)
    changes(postgres, "before")
    _, children = server_processes(postgres)
    (walwriter,) = [pid for pid, title in children.items() if "walwriter" in title]
    os.kill(walwriter, signal.SIGSTOP)
    try:
        tail = changes(postgres, "tail", level="on")
    finally:
        crash(postgres)
    postgres.start()

    after = changes(postgres, "after", json.dumps(tail), level="on")
    assert after["surviving_seq"] == tail["last_seq"]
    assert after["handed_begun"] is True
    assert (after["reaped"], after["queued_again"]) == (0, 0)
    check_carried_on(after)
