"""What to do after a failed attempt: retry at a time, or give up with a reason.

The policy only decides; services.transfers applies the decision. "Gave up after N
attempts" is written here and nowhere else.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Failure:
    """A failed attempt. `reason` is for the owner to read; no secrets in it."""

    reason: str
    transient: bool
    # The remote's Retry-After, in seconds: never retry sooner.
    retry_after: float | None = None
    # A stable name for the cause (FathomError.kind, UploadError.kind, "worker_lost"...):
    # attempt histories and operators' filters group by it.
    kind: str = "error"


@dataclass(frozen=True)
class Retry:
    delay_seconds: float
    error: str


@dataclass(frozen=True)
class GiveUp:
    error: str


Decision = Retry | GiveUp


def backoff_seconds(
    attempts: int,
    retry_after: float | None = None,
    *,
    jitter: Callable[[float, float], float] = random.uniform,
) -> float:
    """Exponential backoff with jitter; never sooner than the server asked (Retry-After)."""
    ceiling = min(
        settings.QUEUE_RETRY_MAX_SECONDS,
        settings.QUEUE_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0),
    )
    # "Equal jitter": half fixed, half random, so retries spread out but still back off.
    delay = ceiling / 2 + jitter(0, ceiling / 2)
    return max(delay, retry_after or 0.0)


def decide(failure: Failure, *, attempts: int, max_attempts: int) -> Decision:
    """Retry a transient failure while attempts remain; give up on anything else."""
    if not failure.transient:
        return GiveUp(failure.reason)
    if attempts >= max_attempts:
        return GiveUp(f"{failure.reason} (gave up after {attempts} attempts)")
    return Retry(backoff_seconds(attempts, failure.retry_after), failure.reason)
