"""A stand-in for FathomClient (check_key, iter_meetings) and Fathom's meeting JSON."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from queue_app.integrations.fathom import CreatedWebhook, FathomError, FathomMeeting, parse_meeting


def meeting_json(recording_id: int, title: str = "", **extra: Any) -> dict[str, Any]:
    """A meeting as Fathom's GET /meetings lists it."""
    return {
        "title": title or f"Recording {recording_id}",
        "meeting_title": f"Calendar event {recording_id}",
        "recording_id": recording_id,
        "url": f"https://fathom.video/calls/{recording_id}",
        "share_url": f"https://fathom.video/share/{recording_id}",
        "created_at": "2025-03-01T17:01:30Z",
        "recording_start_time": "2025-03-01T16:01:12Z",
        "recording_end_time": "2025-03-01T17:00:55Z",
        "recorded_by": {"name": "Alice", "email": "alice@example.com", "team": "Ops"},
        "default_summary": {"template_name": "general", "markdown_formatted": "## Summary"},
        **extra,
    }


class FakeFathom:
    """Answers like Fathom for one key; `refuse` or `fail` make calls raise FathomError."""

    def __init__(
        self,
        api_key: str,
        *,
        valid_keys: set[str],
        pages: list[list[dict[str, Any]]] | None = None,
        fail: FathomError | None = None,
    ) -> None:
        self.api_key = api_key
        self.valid_keys = valid_keys
        self.pages = pages or []
        self.fail = fail
        self.pages_fetched = 0
        self.key_checks = 0
        self.closed = False
        # Webhooks: refused with `webhook_refusal` when set; created and deleted are kept.
        self.webhook_refusal: FathomError | None = None
        self.webhooks_created: list[dict[str, Any]] = []
        self.webhooks_deleted: list[str] = []

    def __enter__(self) -> FakeFathom:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_webhook(self, destination_url: str, **options: Any) -> CreatedWebhook:
        self._authorise()
        if self.webhook_refusal is not None:
            raise self.webhook_refusal
        number = len(self.webhooks_created) + 1
        self.webhooks_created.append({"destination_url": destination_url, **options})
        secret = "whsec_" + base64.b64encode(f"fake-webhook-secret-{number:012d}".encode()).decode()
        return CreatedWebhook(id=f"wh_fake_{number}", secret=secret, url=destination_url)

    def delete_webhook(self, webhook_id: str) -> None:
        self._authorise()
        self.webhooks_deleted.append(webhook_id)

    def _authorise(self) -> None:
        if self.fail is not None:
            raise self.fail
        if self.api_key not in self.valid_keys:
            raise FathomError("Fathom refused the API key (401).", status=401)

    def close(self) -> None:
        self.closed = True

    def check_key(self) -> None:
        self.key_checks += 1
        self._authorise()

    def iter_meetings(self, **filters: Any) -> Iterator[FathomMeeting]:
        for page in self.pages:
            self._authorise()
            self.pages_fetched += 1
            for item in page:
                yield parse_meeting(item)
