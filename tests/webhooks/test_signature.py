"""The Standard Webhooks signature check, against the documented test vector."""

from __future__ import annotations

import pytest

from queue_app.accounts import InvalidWebhookSecret, decode_webhook_secret
from queue_app.errors import InvalidSignature, MissingHeaders, StaleTimestamp
from queue_app.webhooks import sign, verify

# From the Standard Webhooks specification / Svix documentation.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = "1614265330"
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def vector(**changes):
    arguments = {
        "secret": decode_webhook_secret(VECTOR_SECRET),
        "webhook_id": VECTOR_ID,
        "timestamp": VECTOR_TIMESTAMP,
        "signature": VECTOR_SIGNATURE,
        "body": VECTOR_BODY,
        "now": int(VECTOR_TIMESTAMP) + 10,
    }
    return {**arguments, **changes}


def test_the_documented_test_vector_verifies():
    verify(**vector())
    verify(**vector(now=None, tolerance=None))  # the check without a clock
    assert (
        sign(
            secret=decode_webhook_secret(VECTOR_SECRET),
            webhook_id=VECTOR_ID,
            timestamp=VECTOR_TIMESTAMP,
            body=VECTOR_BODY,
        )
        == VECTOR_SIGNATURE
    )


def test_one_matching_signature_among_several_is_enough():
    verify(**vector(signature=f"v1,bm90IHRoaXMgb25l v1a,c29tZXRoaW5n {VECTOR_SIGNATURE}"))


@pytest.mark.parametrize(
    "changes",
    [
        {"body": b'{"test": 2432232315}'},
        {"body": VECTOR_BODY + b" "},
        {"webhook_id": "msg_p5jXN8AQM9LWM0D4loKWxJeK"},
        {"timestamp": "1614265331", "now": 1614265331},
        {"secret": decode_webhook_secret("whsec_" + "A" * 32)},
        {"signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF="},
        {"signature": VECTOR_SIGNATURE.replace("v1,", "v2,")},
        {"signature": VECTOR_SIGNATURE[3:]},
        {"timestamp": "1614265330.0"},
        {"timestamp": "-1614265330"},
    ],
)
def test_anything_changed_fails(changes):
    with pytest.raises(InvalidSignature):
        verify(**vector(**changes))


@pytest.mark.parametrize("skew", [301, -301, 600])
def test_a_timestamp_more_than_five_minutes_off_is_stale(skew):
    with pytest.raises(StaleTimestamp):
        verify(**vector(now=int(VECTOR_TIMESTAMP) + skew))
    verify(**vector(now=int(VECTOR_TIMESTAMP) + (300 if skew > 0 else -300)))


@pytest.mark.parametrize("missing", ["webhook_id", "timestamp", "signature"])
def test_missing_headers_fail(missing):
    with pytest.raises(MissingHeaders):
        verify(**vector(**{missing: ""}))


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", "whsec_c2hvcnQ="])
def test_secrets_that_cannot_be_fathoms_are_refused(secret):
    with pytest.raises(InvalidWebhookSecret):
        decode_webhook_secret(secret)
