"""Metrics of the live path, per process: sockets, publishes, fan-outs, server closes.

Counted where they happen (daphne for sockets and fan-outs; every process that publishes
for events), in prometheus-client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR is
set (scripts/stack.py sets it): each process writes its own file and GET /metrics adds
them up (docs/operations.md). The fan-out path only increments: one histogram
observation per event, never per socket.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# A fan-out of one event to 1,000 sockets takes ~30 ms (docs/benchmarks.md).
FANOUT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

WEBSOCKET_CONNECTIONS = Gauge(
    "fathomloom_websocket_connections",
    "Open WebSockets at /queue_updates receiving events (summed over live daphne processes).",
    multiprocess_mode="livesum",
)
EVENTS_PUBLISHED = Counter(
    "fathomloom_events_published",
    "Messages handed to the channel layer, by type (queue.event, progress.update, access.revoked).",
    ["type"],
)
PUBLISH_FAILURES = Counter(
    "fathomloom_events_publish_failures",
    "Messages the channel layer did not take (Redis down or slow); the event log repairs"
    " queue events.",
    ["type"],
)
FANOUT_DURATION = Histogram(
    "fathomloom_fanout_duration_seconds",
    "How long one daphne process took to hand one queue event to all its sockets.",
    buckets=FANOUT_BUCKETS,
)
WEBSOCKET_CLOSES = Counter(
    "fathomloom_websocket_closes",
    "WebSockets the server closed, by close code (4008: the client read too slowly,"
    " 4029: it sent too fast, 4401/4403: not allowed, 1012/1013: restart or try again).",
    ["code"],
)

# Known label values start at 0, so a rate() or an alert sees the series before the first
# occurrence (Prometheus' advice for labels with a known set of values).
for _type in ("queue.event", "progress.update", "access.revoked"):
    EVENTS_PUBLISHED.labels(_type)
    PUBLISH_FAILURES.labels(_type)
for _code in (1000, 1012, 1013, 4008, 4029, 4401, 4403):
    WEBSOCKET_CLOSES.labels(str(_code))


def connections(count: int) -> None:
    """This process now holds `count` sockets."""
    WEBSOCKET_CONNECTIONS.set(count)


def published(message_type: str, *, sent: bool) -> None:
    (EVENTS_PUBLISHED if sent else PUBLISH_FAILURES).labels(message_type).inc()


def fanned_out(seconds: float) -> None:
    FANOUT_DURATION.observe(seconds)


def closed(code: int | bool | None) -> None:
    """The server closes a socket with `code` (None or True: a normal close, 1000)."""
    normal = code is None or isinstance(code, bool)
    WEBSOCKET_CLOSES.labels("1000" if normal else str(code)).inc()
