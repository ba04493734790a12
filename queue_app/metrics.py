"""Metrics for Prometheus (GET /metrics): what the database knows, read at scrape time,
and what each process counted (the live path, Fathom's API).

The queue and the attempt history are the truth, so these are computed from them on each
scrape: every web process answers the same numbers, and counters survive restarts of
workers and web processes alike (no per-process state to lose or to add up). Names and
labels follow celery-exporter's conventions (`*_total` counters, an `outcome` label).

Counts that only a process knows (sockets, publishes, fan-outs in realtime/metrics.py;
calls to Fathom in integrations/fathom/metrics.py) use prometheus-client's multiprocess
mode: with PROMETHEUS_MULTIPROC_DIR set (scripts/stack.py sets it, emptied at start),
every process writes its counts to its own file there and a scrape adds them up, so one
/metrics covers daphne, every Celery worker child and beat, and a restarted process's
counts stay counted. Without it, /metrics serves this process's own counts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from queue_app import selectors
from queue_app.models import AttemptOutcome, QueueEntry, TransferAttempt

# Upper bounds in seconds: transfers take seconds to an hour; waits seconds to days.
TRANSFER_DURATION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600)
QUEUE_WAIT_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


def _histogram(
    name: str, documentation: str, rows: Any, field: str, buckets: Sequence[float]
) -> HistogramMetricFamily:
    """A histogram of `field` (a duration) over `rows`, counted in one query."""
    limits = {
        f"le_{i}": Count("pk", filter=Q(**{f"{field}__lte": timedelta(seconds=b)}))
        for i, b in enumerate(buckets)
    }
    counts = rows.aggregate(total=Count("pk"), sum=Sum(field), **limits)
    cumulative = [(f"{float(b):g}", counts[f"le_{i}"]) for i, b in enumerate(buckets)]
    cumulative.append(("+Inf", counts["total"]))
    total = counts["sum"].total_seconds() if counts["sum"] is not None else 0.0
    return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=total)


class DatabaseCollector(Collector):
    """The queue's state and the transfers' history, from the database."""

    def collect(self) -> Iterator[Metric]:
        entries = GaugeMetricFamily(
            "fathomloom_queue_entries", "Queue entries by status.", labels=["status"]
        )
        for status, count in selectors.queue_counts().items():
            entries.add_metric([status], count)
        yield entries
        yield GaugeMetricFamily(
            "fathomloom_queue_paused",
            "1 while staff have paused the queue (no new transfers start).",
            value=int(selectors.queue_state().paused),
        )

        finished = TransferAttempt.objects.filter(finished_at__isnull=False)
        transfers = CounterMetricFamily(
            "fathomloom_transfers",
            "Transfer attempts that ended, by outcome (completed, retrying: failed and will"
            " retry, failed: for good, requeued: worker lost, cancelled).",
            labels=["outcome"],
        )
        by_outcome = dict(finished.values_list("outcome").annotate(n=Count("pk")))
        for outcome in AttemptOutcome.values:
            if outcome != AttemptOutcome.RUNNING:
                transfers.add_metric([outcome], by_outcome.get(outcome, 0))
        yield transfers
        moved = finished.aggregate(total=Sum("bytes_moved"))["total"] or 0
        yield CounterMetricFamily(
            "fathomloom_transfer_bytes",
            "Bytes moved by completed transfers.",
            value=moved,
        )

        took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        yield _histogram(
            "fathomloom_transfer_duration_seconds",
            "How long completed transfers took, from claim to completion.",
            finished.filter(outcome=AttemptOutcome.COMPLETED).annotate(took=took),
            "took",
            TRANSFER_DURATION_BUCKETS,
        )
        waited = ExpressionWrapper(F("started_at") - F("created_at"), output_field=DurationField())
        yield _histogram(
            "fathomloom_queue_wait_seconds",
            "How long entries waited in line before their transfer started (last start).",
            QueueEntry.objects.filter(started_at__isnull=False).annotate(waited=waited),
            "waited",
            QUEUE_WAIT_BUCKETS,
        )


# A live gauge's file (fathomloom_websocket_connections): gauge_livesum_<pid>.db.
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def forget_dead_processes(path: str) -> None:
    """Drop the live gauges of processes that have exited (a daphne killed or restarted),
    so that its sockets stop counting. Its counters stay: they only ever add up.

    The processes of one stack.py run share a machine, so a pid tells; daphne has no
    exit hook that would also run on SIGKILL."""
    for name in os.listdir(path):
        match = _LIVE_GAUGE_FILE.match(name)
        if match and not _alive(int(match.group(1))):
            mark_process_dead(int(match.group(1)), path)


def scrape_registry() -> CollectorRegistry:
    """What a scrape of /metrics collects: the database, and every process's counts
    (multiprocess mode) or this process's own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and os.path.isdir(path):
        forget_dead_processes(path)
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(REGISTRY)
    return registry
