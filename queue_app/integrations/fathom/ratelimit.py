"""Fathom's rate limits, shared by every worker: token buckets in Redis, one per API key.

A bucket's key holds a fingerprint of the API key, never the key itself.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from queue_app.integrations.fathom.errors import FathomRateLimited, FathomUnavailable
from queue_app.integrations.fathom.metrics import rate_limit_waited

if TYPE_CHECKING:
    from redis import Redis


def key_fingerprint(api_key: str) -> str:
    """A stable, non-reversible name for an API key: 16 hex digits of its SHA-256."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Limit:
    """A bucket holding ``capacity`` tokens, refilled at ``per_second``."""

    capacity: float
    per_second: float


# Fathom allows 60 calls and 30 downloads a minute per key. A bucket can spend its burst and
# then its refill within one minute, so burst + refill per minute stays at the limit:
# 10 + 50 = 60 calls, 5 + 25 = 30 downloads; never a 429 from our own traffic.
DEFAULT_LIMITS: dict[str, Limit] = {
    "api": Limit(capacity=10, per_second=50 / 60),
    "download": Limit(capacity=5, per_second=25 / 60),
}


def limits_per_minute(calls: int, downloads: int) -> dict[str, Limit]:
    """Buckets for `calls` and `downloads` a minute, split burst 1/6 + refill 5/6 as above."""
    return {
        "api": Limit(capacity=calls / 6, per_second=calls * 5 / 6 / 60),
        "download": Limit(capacity=downloads / 6, per_second=downloads * 5 / 6 / 60),
    }


# Takes a token now, or reserves the next one and returns how long to wait for it; a wait
# beyond max_wait reserves nothing. Redis's own clock, so workers on other machines agree.
_ACQUIRE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens < 1 then
  wait = (1 - tokens) / rate
  if wait > max_wait then
    return tostring(-wait)
  end
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity / rate + max_wait + 60) * 1000))
return tostring(wait)
"""


class RateLimiter:
    """Token buckets in Redis shared by every process that talks to Fathom.

    ``acquire("api", ...)`` before every API call, ``acquire("download", ...)`` as well
    before asking for a download.
    """

    def __init__(
        self,
        client: Redis | None = None,
        *,
        limits: Mapping[str, Limit] | None = None,
        prefix: str = "fathomloom:fathom-ratelimit",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if client is None:
            from django.conf import settings

            # With a retry: after a Redis restart each pooled connection is dead, and
            # without one each would fail a call once (an attempt lost for a transfer).
            client = redis.Redis.from_url(
                settings.REDIS_URL,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
                retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
            )
        self.redis = client
        if limits is None:
            from django.conf import settings

            # Fathom's documented limits unless an operator (or a test) sets others.
            limits = limits_per_minute(
                settings.FATHOM_API_CALLS_PER_MINUTE, settings.FATHOM_DOWNLOADS_PER_MINUTE
            )
        self.limits = dict(limits)
        self.prefix = prefix
        self._script = client.register_script(_ACQUIRE)
        self._sleep = sleep

    def acquire(self, bucket: str, *, key_fingerprint: str, max_wait: float = 30.0) -> None:
        """Takes one token, waiting for it; raises a transient ``FathomRateLimited`` instead
        when the wait would be longer than ``max_wait`` seconds."""
        limit = self.limits[bucket]
        try:
            wait = float(
                self._script(
                    keys=[f"{self.prefix}:{bucket}:{key_fingerprint}"],
                    args=[limit.capacity, limit.per_second, max_wait],
                )
            )
        except redis.RedisError as exc:
            raise FathomUnavailable(
                f"The shared Fathom rate limiter could not reach Redis ({type(exc).__name__})"
            ) from None
        rate_limit_waited(bucket, wait)
        if wait < 0:
            raise FathomRateLimited(
                f"Fathom's {bucket} rate limit for this key is used up for the next "
                f"{-wait:.1f} s; try again later",
                status=None,
                retry_after=-wait,
            )
        if wait > 0:
            self._sleep(wait)
