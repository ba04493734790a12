"""What the OpenAPI document promises, checked against the code: the fuzzer
(test_api_fuzz.py) trusts the document, so these keep it honest on answers a fuzzer seldom
provokes (a throttle, an outage) and pin each mismatch it found."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from rest_framework.test import APIClient

from queue_app import importing
from queue_app.services import line
from tests.helpers import assert_error, queue_rows

pytestmark = pytest.mark.django_db

THROTTLED = {
    ("post", "/api/auth/token"),  # passwords: per address and per username
    ("post", "/api/credentials/fathom"),  # each one asks Fathom
    ("post", "/api/meetings/sync"),
}


@pytest.fixture
def document() -> dict[str, Any]:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if path != "/api/schema/"
    ]


ERROR = {"$ref": "#/components/schemas/Error"}
META_SCHEMA = Draft202012Validator(Draft202012Validator.META_SCHEMA)


def error_schema(response: dict[str, Any]) -> Any:
    return response["content"]["application/json"]["schema"]


def media_schemas(document: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every schema of the document: components, and those inline in requests and responses."""
    yield from document["components"]["schemas"].items()
    for method, path, operation in operations(document):
        bodies = [("request", operation.get("requestBody", {}))]
        bodies += list(operation["responses"].items())
        for status, body in bodies:
            for media_type, content in body.get("content", {}).items():
                yield f"{method.upper()} {path} {status} {media_type}", content["schema"]


def test_every_schema_in_the_document_is_valid_json_schema(document):
    # OpenAPI 3.1's schemas are JSON Schema 2020-12; schemathesis refuses an operation whose
    # schema is not (GET /api/queue/{entry_id} listed "attempts" twice in `required`).
    for where, schema in media_schemas(document):
        errors = [error.message for error in META_SCHEMA.iter_errors(schema)]
        assert not errors, (where, errors)


def test_socket_ticket_is_documented_as_the_201_it_answers(document, alice, client_for):
    responses = document["paths"]["/api/ws-ticket"]["post"]["responses"]

    answer = client_for(alice).post("/api/ws-ticket")

    assert answer.status_code == 201
    assert set(responses) >= {"201", "401", "503"}
    assert "200" not in responses
    ticket = error_schema(responses["201"])["$ref"].split("/")[-1]
    assert set(answer.json()) == set(document["components"]["schemas"][ticket]["properties"])


def test_anonymous_socket_ticket_is_a_documented_401(document):
    assert_error(APIClient().post("/api/ws-ticket"), 401, "not_authenticated")
    responses = document["paths"]["/api/ws-ticket"]["post"]["responses"]
    assert error_schema(responses["401"]) == ERROR


def test_every_operation_that_needs_a_sign_in_documents_401(document):
    missing = [
        f"{method.upper()} {path}"
        for method, path, operation in operations(document)
        # No security, or an empty alternative in it: anyone may call it.
        if operation.get("security")
        and {} not in operation["security"]
        and "401" not in operation["responses"]
    ]
    assert not missing


def test_throttled_operations_document_429(document):
    for method, path in THROTTLED:
        responses = document["paths"][path][method]["responses"]
        assert error_schema(responses["429"]) == ERROR, path


def test_sync_answers_the_documented_429_past_its_rate(alice, client_for, monkeypatch):
    # Fathom is not the point here: each sync finds nothing new.
    monkeypatch.setattr(importing, "meetings_sync", lambda user: importing.SyncResult(0, 0, 0))
    client = client_for(alice)
    statuses = [client.post("/api/meetings/sync").status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]


def test_every_operation_documents_503_for_a_database_or_redis_outage(document):
    missing = [
        f"{method.upper()} {path}"
        for method, path, operation in operations(document)
        if "unavailable" not in operation["responses"].get("503", {}).get("description", "")
    ]
    assert not missing


def test_operations_that_read_a_body_document_413_and_415_and_answer_them(
    document, staff, make_meeting, client_for, settings
):
    client = client_for(staff)
    # A real entry: move looks it up before it reads the body.
    entry = line.entry_enqueue(meeting=make_meeting(staff))
    too_many_fields = "&".join(["a=1"] * (settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    bodies = [
        # A body the parsers do not take: another type, or none named (schemathesis sends a
        # raw multipart body without its Content-Type).
        (b"{}", "text/plain", 415, "unsupported_media_type"),
        (b"{}", "", 415, "unsupported_media_type"),
        (too_many_fields.encode(), "application/x-www-form-urlencoded", 413, "too_large"),
    ]
    before = queue_rows()
    for method, path, operation in operations(document):
        if "requestBody" not in operation:
            continue
        url = path.replace("{entry_id}", str(entry.pk))
        url = url.replace("{meeting_id}", str(entry.meeting_id))  # staff's own meeting
        for body, content_type, status, code in bodies:
            answer = client.generic(method.upper(), url, body, content_type=content_type)
            assert_error(answer, status, code)
            assert error_schema(operation["responses"][str(status)]) == ERROR, (
                f"{method.upper()} {path} {status}"
            )
    assert queue_rows() == before
