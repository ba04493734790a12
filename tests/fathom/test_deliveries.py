"""What the sandbox POSTs: a signed webhook delivery to every registered URL when a meeting
is added, and a signed download callback, both verifiable with queue_app.webhooks.verify
and shaped as Fathom's published models."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import pytest

from queue_app.accounts import decode_webhook_secret
from queue_app.errors import InvalidSignature
from queue_app.webhooks import verify

from . import schemas
from .conftest import ALICE_KEY


class Receiver:
    """A local HTTP server that keeps every POST (headers and body) and answers `status`."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.posts)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def verified(secret: str, headers: dict[str, str], body: bytes) -> None:
    verify(
        secret=decode_webhook_secret(secret),
        webhook_id=headers["webhook-id"],
        timestamp=headers["webhook-timestamp"],
        signature=headers["webhook-signature"],
        body=body,
    )


def test_an_added_meeting_is_delivered_signed_to_every_registered_webhook(
    alice_client, control, receiver
):
    summary_only = alice_client.create_webhook(
        receiver.url + "/one", triggered_for=["my_recordings"], include_summary=True
    )
    everything = alice_client.create_webhook(
        receiver.url + "/two",
        triggered_for=["my_recordings"],
        include_summary=True,
        include_transcript=True,
        include_action_items=True,
        include_crm_matches=True,
    )

    control.add_meeting(ALICE_KEY, 7101, title="Fresh")
    posts = receiver.wait_for(2)

    assert len(posts) == 2
    bodies = {}
    for headers, body in posts:
        meeting = json.loads(body)
        jsonschema.validate(meeting, schemas.MEETING)
        assert meeting["recording_id"] == 7101 and meeting["title"] == "Fresh"
        bodies[headers["webhook-id"]] = (headers, body, meeting)
    by_summary_only = [m for _, _, m in bodies.values() if m["transcript"] is None]
    assert len(by_summary_only) == 1 and by_summary_only[0]["default_summary"]
    for headers, body, meeting in bodies.values():
        secret = everything.secret if meeting["transcript"] else summary_only.secret
        other = summary_only.secret if meeting["transcript"] else everything.secret
        verified(secret, headers, body)
        with pytest.raises(InvalidSignature):
            verified(other, headers, body)
    assert [d["status"] for d in control.deliveries()] == [200, 200]


def test_a_refused_delivery_is_tried_again_and_a_quiet_meeting_not_at_all(
    alice_client, control, receiver
):
    alice_client.create_webhook(receiver.url, triggered_for=["my_recordings"], include_summary=True)
    receiver.status = 503
    control.add_meeting(ALICE_KEY, 7102)
    posts = receiver.wait_for(3)
    assert len(posts) == 3 and len({h["webhook-id"] for h, _ in posts}) == 1  # one message
    control.add_meeting(ALICE_KEY, 7103, notify=False)
    time.sleep(0.5)
    assert len(receiver.posts) == 3


def test_a_download_callback_is_the_status_payload_signed_with_the_keys_webhook_secret(
    alice_client, control, receiver
):
    hook = alice_client.create_webhook(
        receiver.url + "/hook", triggered_for=["my_recordings"], include_summary=True
    )
    control.configure(callback_delay=0.1)
    first = alice_client.request_download(1001, destination_url=receiver.url + "/cb")
    assert first.status == "processing"

    ((headers, body),) = receiver.wait_for(1)

    payload = json.loads(body)
    jsonschema.validate(payload, schemas.RECORDING_DOWNLOAD)
    assert payload["status"] == "completed" and payload["download_id"] == first.download_id
    verified(hook.secret, headers, body)
    # The status endpoint now says the same (completed), with no further wait.
    assert alice_client.get_download(1001, first.download_id).status == "completed"


def test_a_dropped_callback_is_never_sent(alice_client, control, receiver):
    alice_client.create_webhook(receiver.url, triggered_for=["my_recordings"], include_summary=True)
    control.configure(callback_delay=0.1)
    control.add_fault("drop_callback", match="/recordings/1001/download", method="POST")
    alice_client.request_download(1001, destination_url=receiver.url + "/cb")
    time.sleep(0.6)
    assert receiver.posts == []
