"""The application's one error type: `ApplicationError`, with a stable `code` and an HTTP status.

Services raise its subclasses (queue, account, Fathom connection, webhook); every HTTP
answer for one is `{"code": ..., "detail": ...}` (plus `fields` for bad input) with the
error's `status`, built by `queue_app.api.errors.error_response`, so clients branch on
`code` alone. A new error is a subclass here with its `code` and `status`; nothing else
maps errors to statuses. docs/api.md lists every code.

This module imports nothing from the project, so any module may raise these errors.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A request that cannot be carried out; its `code` and `detail` reach the client.

    `detail` is the message (the class's `default_detail` when none is given), for people;
    `retry_after` (seconds) becomes a Retry-After header; `fields` holds per-field messages
    of bad input. `code` and `status` are class attributes; an instance may override them
    only to carry an error translated from elsewhere (DRF's own exceptions).
    """

    code: str = "error"
    status: int = 400
    default_detail: str = "The request cannot be carried out."

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: float | None = None,
        fields: dict[str, Any] | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        self.detail = str(detail) if detail else self.default_detail
        super().__init__(self.detail)
        self.retry_after = retry_after
        self.fields = fields
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


# --- generic answers (also for requests that reach no view) -------------------------------


class InvalidInput(ApplicationError):
    """Wrong shape or type of input; `fields` says which field and why."""

    code = "invalid"
    status = 400
    default_detail = "Invalid input."


class InvalidCredentials(ApplicationError):
    """Wrong username or password at POST /api/auth/token."""

    code = "invalid_credentials"
    status = 400
    default_detail = "Unable to log in with the provided username and password."


class BadRequest(ApplicationError):
    code = "bad_request"
    status = 400
    default_detail = "Bad request."


class Forbidden(ApplicationError):
    code = "permission_denied"
    status = 403
    default_detail = "You do not have permission to perform this action."


class NotFound(ApplicationError):
    code = "not_found"
    status = 404
    default_detail = "Not found."


class MethodNotAllowed(ApplicationError):
    code = "method_not_allowed"
    status = 405
    default_detail = "Method not allowed."


class ServerError(ApplicationError):
    """A bug: the answer to any exception that is not an ApplicationError."""

    code = "server_error"
    status = 500
    default_detail = "The server failed to handle this request; it has been logged."


class ServiceUnavailable(ApplicationError):
    """The database or Redis cannot be reached; trying again shortly may work."""

    code = "unavailable"
    status = 503
    default_detail = "A service this request needs is unavailable; try again shortly."


class RequestTooLarge(ApplicationError):
    """A request body past DATA_UPLOAD_MAX_MEMORY_SIZE, or with too many form fields."""

    code = "too_large"
    status = 413
    default_detail = "The request body is larger than this service accepts."


# --- the queue -----------------------------------------------------------------------------


class QueueError(ApplicationError):
    """A request the queue cannot carry out."""

    code = "queue_error"
    status = 400


class AlreadyQueued(QueueError):
    code = "already_queued"
    status = 409
    default_detail = "This meeting is already in the queue."


class InvalidState(QueueError):
    code = "invalid_state"
    status = 409


class InvalidPosition(QueueError):
    code = "invalid_position"
    status = 400


class EntryNotFound(QueueError):
    code = "not_found"
    status = 404
    default_detail = "No such queue entry."


# --- Fathom accounts -----------------------------------------------------------------------


class AccountError(ApplicationError):
    """A request about a Fathom account that cannot be carried out."""

    code = "account_error"
    status = 400


class FathomNotConnected(AccountError):
    code = "fathom_not_connected"
    status = 400


class FathomKeyRejected(AccountError):
    """Fathom refused the API key (401 or 403)."""

    code = "fathom_key_rejected"
    status = 400


class FathomUnreachable(AccountError):
    """Fathom did not answer usefully (timeout, 5xx, 429); trying later can help."""

    code = "fathom_unavailable"
    status = 503


class FathomBadResponse(AccountError):
    """Fathom answered, but with an error or data we cannot read; retrying will not help."""

    code = "fathom_bad_response"
    status = 502


class InvalidWebhookSecret(AccountError):
    code = "invalid_webhook_secret"
    status = 400


class CredentialDecryptError(AccountError):
    """A stored secret that none of the configured keys decrypts (raised by crypto).

    A server-side key problem, but one the user can fix by connecting again; the message
    names no secret, so it is fit for clients and logs alike.
    """

    code = "credential_unreadable"
    status = 503
    default_detail = (
        "Your stored Fathom credential cannot be read (the key it was encrypted with is no "
        "longer configured); connect your Fathom account again."
    )


# --- Fathom's webhook ----------------------------------------------------------------------


class WebhookError(ApplicationError):
    """A webhook delivery that is refused; nothing of it is written."""

    code = "webhook_error"
    status = 400


class WebhookVerificationError(WebhookError):
    """A delivery that is not provably from the account's sender."""

    code = "invalid_signature"
    status = 401


class MissingHeaders(WebhookVerificationError):
    code = "missing_headers"


class StaleTimestamp(WebhookVerificationError):
    code = "stale_timestamp"


class InvalidSignature(WebhookVerificationError):
    code = "invalid_signature"


class MalformedHeaders(WebhookError):
    code = "malformed_headers"
    status = 400


class MalformedBody(WebhookError):
    code = "malformed_body"
    status = 400


class DeliveryTooLarge(WebhookError):
    code = "too_large"
    status = 413
    default_detail = "The delivery is larger than this service accepts."
