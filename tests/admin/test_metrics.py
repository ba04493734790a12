"""GET /metrics: Prometheus' text format, computed from the database, for staff or with
METRICS_TOKEN; parsed here with prometheus-client's own parser."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from queue_app.integrations.fathom import FathomClient, FathomError, FathomRateLimited
from queue_app.integrations.fathom.ratelimit import Limit, RateLimiter
from queue_app.models import QueueEntry, TransferAttempt
from queue_app.retry_policy import Failure
from queue_app.services import line, transfers

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-for-tests-0123456789"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def scrape(settings):
    settings.METRICS_TOKEN = TOKEN

    def get() -> dict:
        response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        return samples(response.content.decode())

    return get


def test_queue_and_transfer_metrics_follow_the_database(scrape, alice, make_meeting):
    done, failed, _waiting = (line.entry_enqueue(meeting=make_meeting(alice)) for _ in range(3))
    transfers.transfer_claim_next(worker="w")
    transfers.transfer_complete(entry_id=done.pk, worker="w", bytes_moved=1000)
    transfers.transfer_claim_next(worker="w")
    gone = Failure("404", transient=False, kind="fathom_rejected")
    transfers.transfer_retry_or_fail(entry_id=failed.pk, worker="w", failure=gone)
    # The completed transfer took 40 s and waited 10 s in line.
    claimed = timezone.now() - timedelta(seconds=100)
    TransferAttempt.objects.filter(entry=done).update(
        started_at=claimed, finished_at=claimed + timedelta(seconds=40)
    )
    QueueEntry.objects.filter(pk=done.pk).update(
        created_at=claimed - timedelta(seconds=10), started_at=claimed
    )
    line.queue_pause()

    got = scrape()

    assert got["fathomloom_queue_entries", (("status", "queued"),)] == 1
    assert got["fathomloom_queue_entries", (("status", "completed"),)] == 1
    assert got["fathomloom_queue_entries", (("status", "failed"),)] == 1
    assert got["fathomloom_queue_paused", ()] == 1
    assert got["fathomloom_transfers_total", (("outcome", "completed"),)] == 1
    assert got["fathomloom_transfers_total", (("outcome", "failed"),)] == 1
    assert got["fathomloom_transfers_total", (("outcome", "retrying"),)] == 0
    assert got["fathomloom_transfer_bytes_total", ()] == 1000
    duration = "fathomloom_transfer_duration_seconds"
    assert got[f"{duration}_bucket", (("le", "30"),)] == 0
    assert got[f"{duration}_bucket", (("le", "60"),)] == 1
    assert got[f"{duration}_count", ()] == 1 and got[f"{duration}_sum", ()] == 40
    assert got["fathomloom_queue_wait_seconds_bucket", (("le", "15"),)] >= 1


def test_a_retry_keeps_the_failure_counted(scrape, alice, make_meeting):
    entry = line.entry_enqueue(meeting=make_meeting(alice))
    transfers.transfer_claim_next(worker="w")
    gone = Failure("404", transient=False, kind="fathom_rejected")
    transfers.transfer_retry_or_fail(entry_id=entry.pk, worker="w", failure=gone)
    line.entry_retry(entry_id=entry.pk)
    assert scrape()["fathomloom_transfers_total", (("outcome", "failed"),)] == 1


def test_who_may_scrape(settings, alice, staff):
    settings.METRICS_TOKEN = TOKEN
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    user = Client()
    user.force_login(alice)
    assert user.get("/metrics").status_code == 403
    operator = Client()
    operator.force_login(staff)
    assert operator.get("/metrics").status_code == 200
    settings.METRICS_TOKEN = ""  # no token set: a bearer of the empty string gets nothing
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def delta(after: dict, before: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_calls_to_fathom_are_counted_by_endpoint_and_status(scrape, sandbox):
    before = scrape()
    with FathomClient("sandbox-key-alice", base_url=sandbox.base_url) as client:
        client.check_key()
        first = client.request_download(1001)
        client.get_download(1001, first.download_id)
    stranger = FathomClient("not-a-sandbox-key", base_url=sandbox.base_url)
    unreachable = FathomClient("sandbox-key-alice", base_url="http://127.0.0.1:9")
    for client in (stranger, unreachable):
        with client, pytest.raises(FathomError):
            client.check_key()
    after = scrape()

    requests = "fathomloom_fathom_requests_total"
    assert delta(after, before, requests, endpoint="/meetings", status="200") == 1
    assert delta(after, before, requests, endpoint="/meetings", status="401") == 1
    assert delta(after, before, requests, endpoint="/meetings", status="error") == 1
    # Ids become {id}: one series per endpoint, not one per recording.
    assert delta(after, before, requests, endpoint="/recordings/{id}/download", status="202") == 1
    assert (
        delta(after, before, requests, endpoint="/recordings/{id}/downloads/{id}", status="200")
        == 1
    )
    assert not any("1001" in dict(labels).get("endpoint", "") for _, labels in after)


def test_rate_limit_waits_and_refusals_are_counted(scrape):
    waited: list[float] = []
    prefix = f"test-metrics-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    one_a_second = {"api": Limit(capacity=1, per_second=1)}
    limiter = RateLimiter(client, limits=one_a_second, prefix=prefix, sleep=waited.append)
    before = scrape()
    try:
        limiter.acquire("api", key_fingerprint="k")  # the burst's token: no wait
        limiter.acquire("api", key_fingerprint="k")  # the next one: about a second away
        with pytest.raises(FathomRateLimited):
            limiter.acquire("api", key_fingerprint="k", max_wait=0.5)  # two seconds: refused
    finally:
        client.delete(*client.keys(f"{prefix}:*") or ["none"])
    after = scrape()

    wait = "fathomloom_fathom_rate_limit_wait_seconds"
    assert len(waited) == 1
    assert delta(after, before, f"{wait}_count", bucket="api") == 1
    assert delta(after, before, f"{wait}_sum", bucket="api") == pytest.approx(waited[0])
    assert delta(after, before, f"{wait}_bucket", bucket="api", le="0.5") == 0
    assert delta(after, before, f"{wait}_bucket", bucket="api", le="1.0") == 1
    assert delta(after, before, "fathomloom_fathom_rate_limit_refusals_total", bucket="api") == 1
