"""The Celery application. Options come from Django settings prefixed CELERY_.

Beat runs once per deployment (docs/deployment.md). A second one by mistake (two hosts
each running the Procfile's `beat`, a rolling deploy that starts the new beat before the
old one stops) must not double the periodic work, so beat never sends the periodic tasks
themselves: it sends `fathomloom.periodic` naming one, and that runs it only if no run of
the same task started within the last 90% of its interval (a Redis lock, SET NX with a
time to live). The tasks stay safe to run twice anyway (their claims are conditional
under the queue lock); the lock spares the second run's wait for that lock and its
queries.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import redis
from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fathomloom.settings")

logger = logging.getLogger(__name__)

app = Celery("fathomloom")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

PERIODIC_TASK = "fathomloom.periodic"
PERIODIC_LOCK_PREFIX = "fathomloom:periodic:"
# The share of a task's interval during which a run keeps another from starting: below 1,
# so that one beat's next tick always finds the lock gone.
PERIODIC_LOCK_SHARE = 0.9


def _periodic(name: str, seconds: float) -> dict:
    """One beat_schedule entry: `name` every `seconds`, through the once-per-tick guard.

    Each message expires before the next tick, so a backlog after an outage does not run
    the same sweep many times over.
    """
    return {
        "task": PERIODIC_TASK,
        "schedule": timedelta(seconds=seconds),
        "args": (name, seconds),
        "options": {"expires": seconds * PERIODIC_LOCK_SHARE},
    }


def beat_schedule() -> dict[str, dict]:
    """Periodic work, in one place."""
    return {
        "dispatch": _periodic("queue_app.tasks.dispatch", settings.QUEUE_DISPATCH_TICK_SECONDS),
        "requeue-expired": _periodic(
            "queue_app.tasks.requeue_expired", settings.QUEUE_REAPER_SECONDS
        ),
        "prune-events": _periodic("queue_app.tasks.prune_events", 3600),
    }


@app.on_after_configure.connect
def _set_beat_schedule(sender: Celery, **kwargs: object) -> None:
    # Once the configuration is read, not at import: a settings module of a deployment's
    # own may import fathomloom.settings.base, which imports this package first.
    sender.conf.beat_schedule = beat_schedule()


def claim_tick(name: str, seconds: float) -> bool:
    """True for the first caller per `name` within PERIODIC_LOCK_SHARE of `seconds`.

    Without Redis the guard cannot decide: it lets the run go ahead, since the periodic
    tasks are safe to run twice and skipping a lease sweep is worse than doing it twice.
    """
    ttl_ms = max(1, int(seconds * PERIODIC_LOCK_SHARE * 1000))
    try:
        with redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5
        ) as client:
            return bool(client.set(PERIODIC_LOCK_PREFIX + name, os.getpid(), nx=True, px=ttl_ms))
    except redis.RedisError:  # unreachable, timed out, refused: run unguarded (see above)
        logger.warning("periodic %s: Redis is unreachable; running without the guard", name)
        return True


@app.task(name=PERIODIC_TASK, ignore_result=True)
def periodic(name: str, seconds: float) -> object:
    """Run the periodic task `name` here and now, unless another beat's run of it came first."""
    if name not in {entry["args"][0] for entry in app.conf.beat_schedule.values()}:
        # Only the schedule's own tasks: a forged message cannot run anything else through here.
        logger.warning("periodic: %r is not a scheduled task; ignored", name)
        return None
    if not claim_tick(name, seconds):
        logger.info("periodic %s: already run this tick (a second beat?); skipped", name)
        return None
    return app.tasks[name]()
