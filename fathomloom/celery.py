"""The Celery application. Options come from Django settings prefixed CELERY_."""

import os
from datetime import timedelta

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fathomloom.settings")

app = Celery("fathomloom")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic work lives here, in one place. Each entry expires before the next tick, so a
# backlog after an outage does not run the same sweep many times over.
app.conf.beat_schedule = {
    "dispatch": {
        "task": "queue_app.tasks.dispatch",
        "schedule": timedelta(seconds=settings.QUEUE_DISPATCH_TICK_SECONDS),
        "options": {"expires": settings.QUEUE_DISPATCH_TICK_SECONDS * 0.9},
    },
    "requeue-expired": {
        "task": "queue_app.tasks.requeue_expired",
        "schedule": timedelta(seconds=settings.QUEUE_REAPER_SECONDS),
        "options": {"expires": settings.QUEUE_REAPER_SECONDS * 0.9},
    },
    "prune-events": {
        "task": "queue_app.tasks.prune_events",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3000},
    },
}
