"""The OpenAPI document is valid and lists the API; the docs page works without a CDN."""

from __future__ import annotations

import pytest
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

PATHS = {
    "/api/auth/token": {"post", "delete"},
    "/api/queue": {"get", "post"},
    "/api/queue/{entry_id}": {"get", "delete"},
    "/api/queue/{entry_id}/retry": {"post"},
    "/api/queue/{entry_id}/move": {"post"},
    "/api/queue/clear": {"post"},
    "/api/queue/pause": {"post"},
    "/api/queue/resume": {"post"},
    "/api/meetings": {"get"},
    "/api/events": {"get"},
}


def test_schema_is_a_valid_openapi_document_with_every_endpoint(api):
    response = api.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)  # raises on an invalid OpenAPI 3 document
    assert schema["openapi"].startswith("3.")
    for path, methods in PATHS.items():
        assert methods <= set(schema["paths"][path]), path
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "detail"}


def test_docs_page_loads_swagger_ui_from_this_service(api):
    page = api.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn." not in html
    assert "/api/docs/assets/swagger-ui-bundle.js" in html
    asset = api.get("/api/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert b"SwaggerUI" in b"".join(asset.streaming_content)
    assert api.get("/api/docs/assets/LICENSE").status_code == 404
