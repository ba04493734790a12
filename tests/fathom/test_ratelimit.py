"""The Redis token buckets that keep every worker together under Fathom's limits."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from django.conf import settings

from queue_app.integrations.fathom import FathomClient, FathomRateLimited
from queue_app.integrations.fathom.ratelimit import (
    DEFAULT_LIMITS,
    Limit,
    RateLimiter,
    key_fingerprint,
)

from .conftest import ALICE_KEY

FIVE_A_SECOND = {"api": Limit(capacity=5, per_second=5), "download": Limit(5, 5)}


def limiter(prefix: str, limits=FIVE_A_SECOND) -> RateLimiter:
    # A client of its own, as a separate worker process would have.
    return RateLimiter(redis.Redis.from_url(settings.REDIS_URL), limits=limits, prefix=prefix)


def test_default_limits_never_exceed_fathoms_per_minute_limits():
    # A full burst then a minute of refill must stay within 60 calls and 30 downloads.
    for bucket, per_minute in (("api", 60), ("download", 30)):
        limit = DEFAULT_LIMITS[bucket]
        assert limit.capacity + limit.per_second * 60 <= per_minute


def test_ten_acquisitions_at_five_a_second_take_about_a_second(bucket_prefix):
    bucket = limiter(bucket_prefix)
    started = time.monotonic()
    for _ in range(10):
        bucket.acquire("api", key_fingerprint="k1")
    elapsed = time.monotonic() - started
    # A burst of 5, then one every 0.2 s.
    assert 0.8 <= elapsed < 2.0


def test_separate_clients_share_one_bucket(bucket_prefix):
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        bucket = limiter(bucket_prefix)
        for _ in range(10):
            bucket.acquire("api", key_fingerprint="shared")
            with lock:
                times.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # 20 tokens from one bucket: a burst of 5, then 15 at 0.2 s = 3 s. Two separate
    # buckets would have let both finish in about 1 s.
    assert len(times) == 20
    assert max(times) - started >= 2.6
    # And never more than the burst plus the refill in any window.
    times.sort()
    for i, t in enumerate(times):
        in_one_second = sum(1 for u in times[i:] if u - t < 1.0)
        assert in_one_second <= 5 + 5 + 1


def test_keys_have_separate_buckets(bucket_prefix):
    bucket = limiter(bucket_prefix)
    for _ in range(5):
        bucket.acquire("api", key_fingerprint="busy")
    started = time.monotonic()
    for _ in range(5):
        bucket.acquire("api", key_fingerprint="idle")
    assert time.monotonic() - started < 0.5


def test_a_wait_beyond_max_wait_raises_a_transient_error_and_takes_nothing(bucket_prefix):
    bucket = limiter(bucket_prefix, {"api": Limit(capacity=1, per_second=0.5)})
    bucket.acquire("api", key_fingerprint="k")

    with pytest.raises(FathomRateLimited) as caught:
        bucket.acquire("api", key_fingerprint="k", max_wait=0.1)

    assert caught.value.transient is True
    assert 1.5 <= caught.value.retry_after <= 2.0
    # The refused call reserved nothing: the next token is still ~2 s after the first.
    started = time.monotonic()
    bucket.acquire("api", key_fingerprint="k", max_wait=5)
    assert time.monotonic() - started < 2.2


def test_the_client_waits_for_tokens_and_keys_buckets_by_fingerprint(
    sandbox, control, bucket_prefix, redis_client
):
    shared = limiter(
        bucket_prefix, {"api": Limit(capacity=1, per_second=4), "download": Limit(1, 4)}
    )
    with FathomClient(ALICE_KEY, base_url=sandbox.base_url, limiter=shared) as client:
        for _ in range(5):
            client.check_key()

    stamps = [r["time"] for r in control.requests()]
    assert len(stamps) == 5
    # One at once, then one every 0.25 s.
    assert stamps[-1] - stamps[0] >= 0.9
    keys = [k.decode() for k in redis_client.scan_iter(f"{bucket_prefix}:*")]
    assert keys == [f"{bucket_prefix}:api:{key_fingerprint(ALICE_KEY)}"]
    assert not [k for k in keys if ALICE_KEY in k]


def test_an_empty_download_bucket_keeps_the_request_from_reaching_fathom(
    sandbox, control, bucket_prefix
):
    shared = limiter(
        bucket_prefix, {"api": Limit(capacity=10, per_second=10), "download": Limit(1, 0.001)}
    )
    with FathomClient(ALICE_KEY, base_url=sandbox.base_url, limiter=shared) as client:
        client.request_download(1001)
        with pytest.raises(FathomRateLimited) as caught:
            client.request_download(1002)
    assert caught.value.retry_after > 30
    posts = [r for r in control.requests() if r["method"] == "POST"]
    assert [r["path"] for r in posts] == ["/external/v1/recordings/1001/download"]
