"""Assertions shared by the API tests."""

from __future__ import annotations

from typing import Any

from queue_app.models import QueueEntry, QueueEvent, QueueState


def queue_rows() -> dict[str, list[dict[str, Any]]]:
    """Every queue row with every column: equal before and after means nothing was written."""
    return {
        "entries": list(QueueEntry.objects.order_by("id").values()),
        "events": list(QueueEvent.objects.order_by("seq").values()),
        "state": list(QueueState.objects.values()),
    }


def assert_error(response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body
