"""The retry policy decides; it is the only place that says when to give up."""

from __future__ import annotations

import pytest

from queue_app.retry_policy import Failure, GiveUp, Retry, backoff_seconds, decide


def test_a_permanent_failure_gives_up_at_once_with_its_reason():
    decision = decide(
        Failure("Fathom has no such recording.", transient=False), attempts=1, max_attempts=5
    )
    assert decision == GiveUp("Fathom has no such recording.")


def test_a_transient_failure_retries_while_attempts_remain(settings):
    settings.QUEUE_RETRY_BASE_SECONDS, settings.QUEUE_RETRY_MAX_SECONDS = 4, 600
    decision = decide(Failure("503", transient=True), attempts=3, max_attempts=5)
    assert isinstance(decision, Retry) and decision.error == "503"
    # Attempt 3: a ceiling of 4 * 2**2 = 16 s, half of it fixed, half jitter.
    assert 8 <= decision.delay_seconds <= 16


def test_the_last_attempt_gives_up_and_says_after_how_many():
    decision = decide(Failure("timeout", transient=True), attempts=5, max_attempts=5)
    assert decision == GiveUp("timeout (gave up after 5 attempts)")


def test_retry_after_is_never_undercut(settings):
    settings.QUEUE_RETRY_BASE_SECONDS = 1
    decision = decide(Failure("429", transient=True, retry_after=90), attempts=1, max_attempts=5)
    assert decision == Retry(90, "429")


@pytest.mark.parametrize("attempts", [1, 2, 5, 20, 60])
def test_backoff_grows_but_stays_under_the_maximum(settings, attempts):
    settings.QUEUE_RETRY_BASE_SECONDS, settings.QUEUE_RETRY_MAX_SECONDS = 5, 600
    low = backoff_seconds(attempts, jitter=lambda a, b: a)
    high = backoff_seconds(attempts, jitter=lambda a, b: b)
    ceiling = min(600, 5 * 2 ** (attempts - 1))
    assert (low, high) == (ceiling / 2, ceiling)
