"""A user's Fathom API key never appears in clear: not in logs, events, API responses or the
database, through the whole flow of connecting, importing, a webhook and a worker's read.
"""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from queue_app import accounts
from queue_app.models import FathomAccount, QueueEvent
from queue_app.webhooks import sign
from tests.accounts.fakes import meeting_json

pytestmark = pytest.mark.django_db

# A key the sandbox learns for this test only, distinctive enough that a hit is a leak.
SECRET_KEY = "sbx_live_Kq7RmZ2vT9wXy4PnB8cLd3Fh"
WRONG_KEY = "sbx_live_Wrong5jG6kH7lM8nP9qR2sT3"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_the_key_never_appears_in_clear(
    alice, client_for, sandbox, caplog, monkeypatch, settings, django_capture_on_commit_callbacks
):
    settings.QUEUE_DISPATCH_ON_COMMIT = False  # no broker needed; the event is what matters
    for recording_id in range(7001, 7008):  # two pages of the sandbox's 5
        sandbox.add_meeting(SECRET_KEY, recording_id)
    published: list[str] = []
    monkeypatch.setattr(
        "realtime.publisher.publish_to_group",
        lambda group, message: published.append(json.dumps(message)) or True,
    )
    caplog.set_level(logging.DEBUG)
    responses = []
    client = client_for(alice)

    with CaptureQueriesContext(connection) as queries:  # also turns on SQL logging
        # A wrong key first, a key too long, then the right one.
        responses.append(client.post("/api/credentials/fathom", {"api_key": WRONG_KEY}))
        responses.append(
            client.post("/api/credentials/fathom", {"api_key": SECRET_KEY * 20}, format="json")
        )
        responses.append(
            client.post("/api/credentials/fathom", {"api_key": SECRET_KEY}, format="json")
        )
        responses.append(client.get("/api/credentials/fathom"))
        responses.append(client.patch("/api/credentials/fathom", {"auto_queue": True}, "json"))
        responses.append(
            client.put("/api/credentials/fathom/webhook", {"secret": WEBHOOK_SECRET}, "json")
        )
        responses.append(client.get("/api/credentials/fathom/webhook"))
        responses.append(client.post("/api/meetings/sync"))
        sandbox.add_fault("status", match="/meetings", status=503)
        responses.append(client.post("/api/meetings/sync"))  # a failure's message too

        # A webhook delivery, queued by auto-queue, its event published after commit.
        account = FathomAccount.objects.get(user=alice)
        body = json.dumps(meeting_json(7100)).encode()
        timestamp = int(time.time())
        key = accounts.decode_webhook_secret(WEBHOOK_SECRET)
        with django_capture_on_commit_callbacks(execute=True):
            responses.append(
                client.post(
                    f"/webhooks/fathom?account={account.webhook_token}",
                    data=body,
                    content_type="application/json",
                    headers={
                        "webhook-id": "msg_leak_test",
                        "webhook-timestamp": str(timestamp),
                        "webhook-signature": sign(
                            secret=key, webhook_id="msg_leak_test", timestamp=timestamp, body=body
                        ),
                    },
                )
            )
        responses.append(client.get("/api/queue"))
        responses.append(client.get("/api/events"))
        responses.append(client.get("/api/meetings"))

        # What a worker does.
        assert accounts.fathom_api_key_for(alice) == SECRET_KEY

    statuses = [response.status_code for response in responses]
    assert statuses == [400, 400, 200, 200, 200, 200, 200, 200, 503, 200, 200, 200, 200]
    assert responses[7].json()["created"] == 7
    assert QueueEvent.objects.filter(update_type="meeting_added").count() == 1
    assert published, "the meeting_added event was published"
    assert caplog.records, "the flow logged something"
    assert queries.captured_queries

    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    places = {
        "logs": caplog.text
        + "\n".join(f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records),
        "SQL": json.dumps(queries.captured_queries),
        "API responses": "\n".join(
            r.content.decode() + json.dumps(dict(r.headers)) for r in responses
        ),
        "events": json.dumps(list(QueueEvent.objects.values("payload"))) + "\n".join(published),
        "database": dump.getvalue(),
    }
    assert "fathomaccount" in places["database"]  # the dump includes the account row
    for secret in (SECRET_KEY, WRONG_KEY, WEBHOOK_SECRET):
        for place, text in places.items():
            assert secret not in text, f"{secret[:8]}… found in clear in {place}"
    assert SECRET_KEY[-4:] in places["API responses"]  # the four it may show
