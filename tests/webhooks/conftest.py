"""A Fathom account with a webhook secret, and a helper that signs and sends deliveries."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from django.test import Client

from queue_app import accounts
from queue_app.models import FathomAccount
from queue_app.webhooks import sign
from tests.accounts.fakes import FakeFathom

SECRET = "whsec_" + base64.b64encode(b"fathom-webhook-signing-key-32byt").decode()
API_KEY = "fk_live_webhook_tests_9f8e7d6c5b4a"


@pytest.fixture
def account(alice) -> FathomAccount:
    accounts.fathom_account_set_key(
        user=alice, api_key=API_KEY, client=FakeFathom(API_KEY, valid_keys={API_KEY})
    )
    return accounts.fathom_account_set_webhook_secret(user=alice, secret=SECRET)


def deliver(
    account: FathomAccount,
    payload: Any,
    *,
    webhook_id: str = "msg_2sX4hY0bQ7",
    timestamp: int | None = None,
    secret: str = SECRET,
    signature: str | None = None,
    token: str | None = None,
    path: str = "/webhooks/fathom",
):
    """POST a delivery to `path` (Fathom's webhook endpoint, or its download callback),
    signed with `secret` unless `signature` is given."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    timestamp = int(time.time()) if timestamp is None else timestamp
    if signature is None:
        key = accounts.decode_webhook_secret(secret)
        signature = sign(secret=key, webhook_id=webhook_id, timestamp=timestamp, body=body)
    return Client().post(
        f"{path}?account={account.webhook_token if token is None else token}",
        data=body,
        content_type="application/json",
        headers={
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        },
    )
