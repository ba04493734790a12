"""The pipeline's Celery fleet on each broker the project supports: Redis and RabbitMQ.

`broker` is a session fixture with one param per broker, so every test that uses the
fleet (through `celery_worker` or `broker_env`) runs once on each. Redis uses the
session's worker (tests/processes.py). RabbitMQ gets a worker of its own, and this
process's Celery app sends to it while such a test runs, in a private virtual host made
for the run with rabbitmqctl; where rabbitmqctl cannot make one (RabbitMQ on another
host, no rights), in the URL's own vhost with names of the run's own
(`CELERY_NAME_PREFIX`: its task queue and control exchange), deleted afterwards. Where
no RabbitMQ answers, the RabbitMQ runs are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from tests.processes import CELERY_WORKER, Process, wait_until_idle

# Where the RabbitMQ of this machine and CI answers (guest may only log in from loopback).
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
# "0": do not try rabbitmqctl, use the shared vhost with the run's own names.
PRIVATE_VHOST = os.environ.get("TEST_RABBITMQ_PRIVATE_VHOST", "1") != "0"


@dataclass
class Broker:
    name: str
    # None: the processes' own default (CELERY_BROKER_URL, else REDIS_URL).
    url: str | None
    env: dict[str, str] = field(repr=False)
    # CELERY_NAME_PREFIX of the processes on it ("": Celery's own names).
    names: str = ""


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


def run_name() -> str:
    return f"fathomloom-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def private_vhost(url: str) -> Iterator[str | None]:
    """A RabbitMQ virtual host for this run only (its queues and exchanges go with it),
    made and deleted with rabbitmqctl; yields `url` pointing into it, or None when
    rabbitmqctl is missing or may not make one."""
    rabbitmqctl = shutil.which("rabbitmqctl") if PRIVATE_VHOST else None
    if rabbitmqctl is None:
        yield None
        return
    parts = urlsplit(url)
    vhost = run_name()

    def ctl(*args: str) -> bool:
        try:
            done = subprocess.run(
                [rabbitmqctl, "-q", *args], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    if not ctl("add_vhost", vhost):
        yield None
        return
    try:
        if ctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*"):
            yield urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))
        else:
            yield None
    finally:
        ctl("delete_vhost", vhost)


def delete_names(url: str, names: str) -> None:
    """Remove what a run with CELERY_NAME_PREFIX=`names` left in a shared vhost."""
    from kombu import Connection

    with Connection(url, connect_timeout=5) as connection:
        channel = connection.default_channel
        channel.queue_delete(f"{names}celery")
        pidbox = f"{names}celery.pidbox"
        for exchange in (f"{names}celery", pidbox, f"reply.{pidbox}", f"{names}celeryev"):
            channel.exchange_delete(exchange)


@contextmanager
def sending_to(broker: Broker) -> Iterator[None]:
    """This process's Celery app (dispatches on commit, inspect, purge) on `broker`
    meanwhile, with its names."""
    from kombu import pools

    from fathomloom.celery import app

    if broker.url is None:
        yield
        return
    names = {
        "broker_url": broker.url,
        "task_default_queue": f"{broker.names}celery",
        "control_exchange": f"{broker.names}celery",
        "event_exchange": f"{broker.names}celeryev",
    }

    def switch(values: dict[str, str]) -> None:
        # kombu keeps connection and producer pools in a registry by connection: closed
        # and dropped there too, or the next switch to the same URL gets a closed one.
        pools.reset()
        app._pool = None
        # The queues, router and control mailbox are made once from the configuration.
        app.__dict__.pop("amqp", None)
        app.__dict__.pop("control", None)
        for key, value in values.items():
            setattr(app.conf, key, value)

    before = {key: app.conf[key] for key in names}
    switch(names)
    try:
        yield
    finally:
        switch(before)


@pytest.fixture(scope="session", params=["redis", "rabbitmq"])
def broker(request, process_env) -> Iterator[Broker]:
    if request.param == "redis":
        yield Broker("redis", None, process_env)
        return
    problem = rabbitmq_problem(RABBITMQ_URL)
    if problem:
        pytest.skip(problem)
    with private_vhost(RABBITMQ_URL) as url:
        if url is not None:
            yield Broker("rabbitmq", url, {**process_env, "CELERY_BROKER_URL": url})
            return
        names = run_name() + "."
        env = {**process_env, "CELERY_BROKER_URL": RABBITMQ_URL, "CELERY_NAME_PREFIX": names}
        try:
            yield Broker("rabbitmq", RABBITMQ_URL, env, names)
        finally:
            delete_names(RABBITMQ_URL, names)


@pytest.fixture
def broker_env(broker) -> dict[str, str]:
    """The environment of a process on this test's broker (beat, another worker)."""
    return broker.env


@pytest.fixture(scope="session")
def _rabbitmq_worker_process(broker) -> Iterator[Process]:
    """A worker like the session's Redis one, consuming the private RabbitMQ vhost."""
    worker = Process("celery-worker-rabbitmq", CELERY_WORKER, broker.env)
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
    with sending_to(broker):
        yield worker
        wait_until_idle()
