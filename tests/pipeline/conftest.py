"""The pipeline's Celery fleet on each broker the project supports: Redis and RabbitMQ.

`broker` is a session fixture with one param per broker, so every test that uses the
fleet (through `celery_worker` or `broker_env`) runs once on each. Redis uses the
session's worker (tests/processes.py); RabbitMQ gets a private virtual host made for the
run (rabbitmqctl) and a worker of its own on it, and this process's Celery app sends to
it while such a test runs. Where no RabbitMQ answers, or no private vhost can be made,
the RabbitMQ runs are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from tests.processes import Process, wait_until_idle

# Where the RabbitMQ of this machine and CI answers (guest may only log in from loopback).
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


@dataclass
class Broker:
    name: str
    # None: the processes' own default (CELERY_BROKER_URL, else REDIS_URL).
    url: str | None
    env: dict[str, str] = field(repr=False)


def rabbitmq_problem(url: str) -> str | None:
    """Why RabbitMQ at `url` cannot be used, or None when it answers."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # refused, timed out, bad credentials: all mean "no RabbitMQ"
        where = f"{urlsplit(url).hostname}:{urlsplit(url).port or 5672}"
        return f"no RabbitMQ answers at {where} ({type(exc).__name__})"
    return None


@contextmanager
def private_vhost(url: str) -> Iterator[str]:
    """A RabbitMQ virtual host for this run only (its queues and exchanges with it), made
    and deleted with rabbitmqctl; yields `url` pointing into it."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        pytest.skip("RabbitMQ answers, but there is no rabbitmqctl to make a private vhost")
    parts = urlsplit(url)
    vhost = f"fathomloom-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [rabbitmqctl, "-q", *args], capture_output=True, text=True, timeout=60
        )

    made = ctl("add_vhost", vhost)
    if made.returncode != 0:
        pytest.skip(f"rabbitmqctl could not make a private vhost: {made.stderr.strip()[:200]}")
    try:
        allowed = ctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
        if allowed.returncode != 0:
            pytest.skip(f"rabbitmqctl could not open the vhost: {allowed.stderr.strip()[:200]}")
        yield urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))
    finally:
        ctl("delete_vhost", vhost)


@contextmanager
def sending_to(url: str | None) -> Iterator[None]:
    """This process's Celery app (dispatches on commit, inspect, purge) on `url` meanwhile."""
    from kombu import pools

    from fathomloom.celery import app

    if url is None:
        yield
        return

    def reset_pools() -> None:
        # kombu keeps connection and producer pools in a registry by connection: closed
        # and dropped there too, or the next switch to the same URL gets a closed one.
        pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    before = app.conf.broker_url
    reset_pools()
    app.conf.broker_url = url
    try:
        yield
    finally:
        reset_pools()
        app.conf.broker_url = before


@pytest.fixture(scope="session", params=["redis", "rabbitmq"])
def broker(request, process_env) -> Iterator[Broker]:
    if request.param == "redis":
        yield Broker("redis", None, process_env)
        return
    problem = rabbitmq_problem(RABBITMQ_URL)
    if problem:
        pytest.skip(problem)
    with private_vhost(RABBITMQ_URL) as url:
        yield Broker("rabbitmq", url, {**process_env, "CELERY_BROKER_URL": url})


@pytest.fixture
def broker_env(broker) -> dict[str, str]:
    """The environment of a process on this test's broker (beat, another worker)."""
    return broker.env


@pytest.fixture(scope="session")
def _rabbitmq_worker_process(broker) -> Iterator[Process]:
    """A worker like the session's Redis one, consuming the private RabbitMQ vhost."""
    worker = Process(
        "celery-worker-rabbitmq",
        [
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
        ],
        broker.env,
    )
    try:
        worker.wait_for_output(r"ready\.", timeout=60)
    except RuntimeError:
        worker.stop()
        raise
    yield worker
    worker.stop()


@pytest.fixture
def celery_worker(broker, request, transactional_db) -> Iterator[Process]:
    """The broker's worker; this process sends to the same broker until the test ends,
    after which the worker is waited on until idle (as tests/processes.py's own)."""
    name = "_celery_worker_process" if broker.name == "redis" else "_rabbitmq_worker_process"
    worker = request.getfixturevalue(name)
    with sending_to(broker.url):
        yield worker
        wait_until_idle()
