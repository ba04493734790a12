"""The API's one error shape, `{"code": ..., "detail": ...}` (plus `fields` for bad input).

`error_response` is the only code that builds it, from an ApplicationError (queue_app/errors.py)
whose `status` and `code` it sends as they are. Everything else here only picks the error:

- `exception_handler` (REST_FRAMEWORK["EXCEPTION_HANDLER"], so every DRF view): the
  application's errors, DRF's own (validation, auth, permission, 404, 405, throttling),
  Django's Http404, PermissionDenied and a body too large (413); a database or Redis that
  cannot be reached is 503 `unavailable`. Anything else is a bug: it is left to Django,
  which logs it with its traceback and answers with `server_error` below.
- `bad_request`, `permission_denied`, `page_not_found`, `server_error`: the root URLconf's
  handler400/403/404/500, JSON under /api/ and /webhooks/ (unknown paths, errors outside a
  DRF view), Django's own pages elsewhere. With DEBUG on, Django shows its debug pages for
  404 and 500 instead, as it does for every path.
- A database or Redis that cannot be reached outside a DRF view is 503 as well, logged as
  one WARNING: `JsonErrorsMiddleware.process_exception` for a view (the webhook, the
  pages), `server_error` for a middleware (a session or user lookup before any view;
  with DEBUG off - with DEBUG on Django shows its debug page, logged at ERROR, as for
  any middleware's exception). JSON under /api/ and /webhooks/, a short page elsewhere.
- Fathom's webhook view answers its refusals with `error_response` directly.
- `hide_secrets_in_debug`: for views that take secrets, error reports that hide them
  with DEBUG on as well.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.log import log_response
from django.views import defaults
from django.views.debug import SafeExceptionReporterFilter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions
from rest_framework.views import set_rollback

from queue_app.errors import (
    ApplicationError,
    BadRequest,
    Forbidden,
    InvalidInput,
    NotFound,
    RequestTooLarge,
    ServerError,
    ServiceUnavailable,
)

# Paths whose every answer is JSON, even when no view answers them.
JSON_PATH_PREFIXES = ("/api/", "/webhooks/")

# What a view cannot do without, and the errors that say it cannot be reached.
UNAVAILABLE_SERVICES: dict[str, tuple[type[Exception], ...]] = {
    "the database": (DatabaseOperationalError, DatabaseInterfaceError),
    "Redis": (RedisConnectionError, RedisTimeoutError),
}


def error_response(
    error: ApplicationError, *, headers: dict[str, str] | None = None
) -> JsonResponse:
    """The answer to `error`: its status, `{"code", "detail"}` (+ `fields`), Retry-After."""
    body: dict[str, Any] = {"code": error.code, "detail": error.detail}
    if error.fields is not None:
        body["fields"] = error.fields
    response = JsonResponse(
        body, status=error.status, headers=headers, json_dumps_params={"ensure_ascii": False}
    )
    if error.retry_after is not None:
        response["Retry-After"] = str(max(1, round(error.retry_after)))
    return response


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


def application_error(exc: Exception) -> ApplicationError | None:
    """The ApplicationError a view's exception is answered with; None for a bug."""
    if isinstance(exc, ApplicationError):
        return exc
    if isinstance(exc, Http404):
        # A generic message: "No Meeting matches the given query" would hint at what exists.
        return NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return Forbidden()
    # Django raises these reading a body (DRF's request.data); left to Django, they would be
    # a 400 `bad_request` logged at ERROR with a traceback, for what is only a client's excess.
    if isinstance(exc, RequestDataTooBig):
        return RequestTooLarge()
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return RequestTooLarge(
            "The request has more form fields or files than this service accepts."
        )
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return InvalidInput("; ".join(_flatten(exc.detail)), fields=fields)
    if isinstance(exc, exceptions.APIException):
        code = getattr(exc.detail, "code", None) or exc.default_code
        return ApplicationError(
            str(exc.detail),
            code=str(code),
            status=exc.status_code,
            retry_after=getattr(exc, "wait", None),  # Throttled's
        )
    return None


def unavailable_service(exc: Exception) -> str | None:
    """Which service `exc` says cannot be reached ("the database", "Redis"), if any."""
    for service, errors in UNAVAILABLE_SERVICES.items():
        if isinstance(exc, errors):
            return service
    return None


# Outside /api/ and /webhooks/: a page of its own, no template. The site's templates read
# the signed-in user, which needs the database that is down.
UNAVAILABLE_PAGE = (
    "<!doctype html>\n<title>Service unavailable · fathomloom</title>\n"
    "<h1>Service unavailable</h1>\n"
    "<p>A service this page needs is unavailable; try again shortly.</p>\n"
)


def _unavailable(
    request: HttpRequest | None, service: str, exc: BaseException, *, json: bool
) -> HttpResponse:
    """503 for a database or Redis that cannot be reached, logged as one WARNING."""
    if json:
        response: HttpResponse = error_response(ServiceUnavailable())
    else:
        response = HttpResponse(UNAVAILABLE_PAGE, status=503, content_type="text/html")
    # One WARNING line, no traceback: the outage is not a bug here. Only the exception's
    # class: a driver's message may name hosts and users. Marks the response as logged,
    # so Django does not log it again at ERROR.
    log_response(
        "%s %s: %s is unavailable (%s)",
        getattr(request, "method", "-"),
        getattr(request, "path", "-"),
        service,
        f"{type(exc).__module__}.{type(exc).__qualname__}",
        response=response,
        request=request,
        level="warning",
    )
    return response


def unavailable_response(request: HttpRequest, exc: BaseException | None) -> HttpResponse | None:
    """The 503 for `exc` if it says the database or Redis cannot be reached (JSON under
    /api/ and /webhooks/, a short page elsewhere); None for any other exception."""
    service = unavailable_service(exc) if isinstance(exc, Exception) else None
    if service is None:
        return None
    return _unavailable(request, service, exc, json=_json_path(request))


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """DRF's EXCEPTION_HANDLER: the answer to an exception raised in an API view.

    Returns None for a bug, so that Django logs it with its traceback and answers 500
    (`server_error`, from the handler500 below).
    """
    request = context.get("request")
    service = unavailable_service(exc)
    if service is not None:
        set_rollback()
        return _unavailable(getattr(request, "_request", request), service, exc, json=True)
    error = application_error(exc)
    if error is None:
        return None
    # Roll back an ATOMIC_REQUESTS transaction, as DRF's own handler does.
    set_rollback()
    # DRF puts the scheme to authenticate with on its 401s (NotAuthenticated and the like).
    auth_header = getattr(exc, "auth_header", None)
    headers = {"WWW-Authenticate": auth_header} if auth_header else None
    return error_response(error, headers=headers)


# --- error reports of views that handle secrets -----------------------------------------


class AlwaysSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter of error reports, at work with DEBUG on too.

    Django's steps aside when DEBUG is on ("your site is not safe anyway"), so its debug
    page lists what sensitive_variables and sensitive_post_parameters mark, in clear; but
    `make run` runs with DEBUG on, and with real Fathom keys.
    """

    def is_active(self, request: HttpRequest | None) -> bool:
        return True


_ALWAYS_SAFE = AlwaysSafeExceptionReporterFilter()


def hide_secrets_in_debug(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A view whose error reports (the DEBUG page too) hide what sensitive_variables and
    sensitive_post_parameters mark. For a class: method_decorator(..., name="dispatch")."""

    @wraps(view)
    def hiding(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Django's reports take the filter from here (get_exception_reporter_filter).
        request.exception_reporter_filter = _ALWAYS_SAFE
        return view(request, *args, **kwargs)

    return hiding


# --- the root URLconf's error handlers ----------------------------------------------------


def _json_path(request: HttpRequest) -> bool:
    return request.path_info.startswith(JSON_PATH_PREFIXES)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _json_path(request):
        return error_response(BadRequest())
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _json_path(request):
        return error_response(Forbidden())
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _json_path(request):
        # Also for an unknown path, such as /api/queue/: API paths have no trailing slash.
        return error_response(NotFound())
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls handler500 inside its `except` around the failing view or middleware
    # (a session or user lookup before any view), so the exception is at hand here.
    unavailable = unavailable_response(request, sys.exc_info()[1])
    if unavailable is not None:
        return unavailable
    if _json_path(request):
        return error_response(ServerError())
    return defaults.server_error(request)


class JsonErrorsMiddleware:
    """JSON under /api/ and /webhooks/ with DEBUG on too.

    With DEBUG on, Django answers an unknown path and an unhandled exception with its
    HTML debug pages instead of handler404 and handler500 (having logged the exception
    as usual). API clients get the documented shape either way; elsewhere the debug
    pages stay.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view outside DRF (the webhook, the pages) that finds the database or Redis
        down: 503, with DEBUG on too. A middleware's such failure reaches server_error."""
        return unavailable_response(request, exception)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code not in (404, 500) or not _json_path(request):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        if response.status_code == 404:
            return page_not_found(request, Http404())
        return server_error(request)
