"""Metrics of the calls to Fathom's API, in the process that makes them (Celery workers for
transfers, web processes for key checks and syncs).

Counted by the client's one request function and the rate limiter; GET /metrics adds up
every process's counts (prometheus-client's multiprocess mode, docs/operations.md).
Imports nothing of queue_app: the Fathom integration stays usable on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import Counter, Histogram

# Path segments kept as they are in the `endpoint` label; any other (an id) is `{id}`, so
# the label has a handful of values, not one per recording.
_LITERAL_SEGMENTS = frozenset(
    {
        "meetings",
        "recordings",
        "download",
        "downloads",
        "webhooks",
        "teams",
        "team_members",
        "summary",
        "transcript",
        "meeting_types",
    }
)

FATHOM_REQUESTS = Counter(
    "fathomloom_fathom_requests",
    "Calls to Fathom's API by endpoint (a path with ids as {id}) and HTTP status"
    " (`error`: no answer, a timeout or a connection failure).",
    ["endpoint", "status"],
)
RATE_LIMIT_WAIT = Histogram(
    "fathomloom_fathom_rate_limit_wait_seconds",
    "Waits for a token of the shared Fathom rate limiter before a call, by bucket.",
    ["bucket"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30),
)
RATE_LIMIT_REFUSALS = Counter(
    "fathomloom_fathom_rate_limit_refusals",
    "Calls not made because the limiter's wait would have been too long (retried later).",
    ["bucket"],
)

# The limiter's buckets start at 0, so alerts see them before the first wait.
for _bucket in ("api", "download"):
    RATE_LIMIT_WAIT.labels(_bucket)
    RATE_LIMIT_REFUSALS.labels(_bucket)


def endpoint(path: str) -> str:
    """'/recordings/1001/downloads/dl-7' -> '/recordings/{id}/downloads/{id}'."""
    parts = [p if p in _LITERAL_SEGMENTS else "{id}" for p in path.split("?")[0].split("/") if p]
    return "/" + "/".join(parts)


def counted(send: Callable[..., httpx.Response], method: str, path: str, **kwargs: Any) -> Any:
    """`send(method, path, **kwargs)`, counted by endpoint and status (or `error`)."""
    try:
        response = send(method, path, **kwargs)
    except httpx.HTTPError:
        FATHOM_REQUESTS.labels(endpoint(path), "error").inc()
        raise
    FATHOM_REQUESTS.labels(endpoint(path), str(response.status_code)).inc()
    return response


def rate_limit_waited(bucket: str, wait: float) -> None:
    """The limiter's answer for one token: 0 (none), seconds to wait, or < 0 (refused)."""
    if wait > 0:
        RATE_LIMIT_WAIT.labels(bucket).observe(wait)
    elif wait < 0:
        RATE_LIMIT_REFUSALS.labels(bucket).inc()
