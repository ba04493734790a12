"""The API's one error shape, `{"code": ..., "detail": ...}`, made by one exception handler.

DRF's own errors (validation, auth, permission, 404, throttling) and the queue services'
QueueError codes all pass through `exception_handler`, so clients branch on `code` alone.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from queue_app.services import (
    AlreadyQueued,
    EntryNotFound,
    InvalidPosition,
    InvalidState,
    QueueError,
)

# HTTP status for each service error; a QueueError subclass not listed gets its base's.
QUEUE_ERROR_STATUS: dict[type[QueueError], int] = {
    AlreadyQueued: status.HTTP_409_CONFLICT,
    InvalidState: status.HTTP_409_CONFLICT,
    InvalidPosition: status.HTTP_400_BAD_REQUEST,
    EntryNotFound: status.HTTP_404_NOT_FOUND,
    QueueError: status.HTTP_400_BAD_REQUEST,
}


class InvalidCredentials(exceptions.APIException):
    """Wrong username or password at POST /api/auth/token."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_credentials"
    default_detail = "Unable to log in with the provided username and password."


def queue_error_to_api(exc: QueueError) -> exceptions.APIException:
    """The APIException carrying a service error's status, code and message."""
    for cls in type(exc).__mro__:
        if cls in QUEUE_ERROR_STATUS:
            error = exceptions.APIException(detail=str(exc) or exc.code, code=exc.code)
            error.status_code = QUEUE_ERROR_STATUS[cls]
            return error
    raise AssertionError("QueueError is in QUEUE_ERROR_STATUS")  # pragma: no cover


def _flatten(detail: Any, prefix: str = "") -> list[str]:
    """Readable one-line messages from a ValidationError's nested detail."""
    if isinstance(detail, dict):
        messages = []
        for field, value in detail.items():
            name = "" if field == "non_field_errors" else f"{prefix}{field}"
            messages += _flatten(value, f"{name}." if name else "")
        return messages
    if isinstance(detail, list):
        return [message for item in detail for message in _flatten(item, prefix)]
    field = prefix.rstrip(".")
    return [f"{field}: {detail}" if field else str(detail)]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every API error as `{"code", "detail"}` (plus `fields` for bad input).

    Anything else (a bug) returns None, so Django logs it and answers 500.
    """
    if isinstance(exc, QueueError):
        exc = queue_error_to_api(exc)
    elif isinstance(exc, Http404):
        # A generic message: "No Meeting matches the given query" would hint at what exists.
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    # DRF's handler sets Retry-After and WWW-Authenticate and rolls back an
    # ATOMIC_REQUESTS transaction; keep all of that and replace only the body.
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {
            "code": "invalid",
            "detail": "; ".join(_flatten(exc.detail)) or "Invalid input.",
            "fields": fields,
        }
        return response
    code = getattr(exc.detail, "code", None) or exc.default_code
    response.data = {"code": str(code), "detail": str(exc.detail)}
    return response
