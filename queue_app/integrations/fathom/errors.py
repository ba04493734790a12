"""What can go wrong talking to Fathom: ``FathomError`` and its kinds.

Errors say whether a retry can help (``transient``) and why, in words; the API key
never appears in a message, URL or repr.

Every other module of the package imports from here, and this module imports none of
them, so the errors can be raised anywhere (the rate limiter too) without an import circle.
"""

from __future__ import annotations


class FathomError(Exception):
    """A call to Fathom failed. ``transient`` says whether trying again later can help."""

    # A stable name for attempt histories and filters; each subclass has its own.
    kind = "fathom_error"

    def __init__(
        self,
        reason: str,
        *,
        transient: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.status = status
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(reason={self.reason!r}, transient={self.transient}, "
            f"status={self.status}, retry_after={self.retry_after})"
        )


class FathomRateLimited(FathomError):
    """429: Fathom (or our shared token bucket) says to wait ``retry_after`` seconds."""

    kind = "fathom_rate_limited"

    def __init__(
        self, reason: str, *, status: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, transient=True, status=status, retry_after=retry_after)


class FathomUnavailable(FathomError):
    """5xx, timeouts, connection errors: Fathom may answer later."""

    kind = "fathom_unavailable"

    def __init__(
        self, reason: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, transient=True, status=status, retry_after=retry_after)


class FathomRejected(FathomError):
    """4xx other than 429: the same request will fail the same way."""

    kind = "fathom_rejected"

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason, transient=False, status=status)


class FathomMalformedResponse(FathomError):
    """Fathom answered with something that is not the documented shape."""

    kind = "fathom_malformed"

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason, transient=False, status=status)


class FathomDownloadFailed(FathomError):
    """Fathom could not produce the file (download status ``failed``); ``failure_reason``
    is Fathom's why (``generation_failed``, ``generation_timeout``). A timeout may pass with
    a new request, so it is transient; a failed generation is not."""

    kind = "fathom_download_failed"

    def __init__(
        self,
        reason: str,
        *,
        failure_reason: str | None = None,
        transient: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(reason, transient=transient, status=status)
        self.failure_reason = failure_reason


class FathomNoAccess(FathomRejected):
    """403 on a download: the recording was shared with this key's user with limited
    access, which lets them watch it but not download it."""

    kind = "fathom_no_download_access"

    def __init__(self, reason: str, *, status: int | None = 403) -> None:
        super().__init__(reason, status=status)


class FathomNoMedia(FathomRejected):
    """422 on a download: the recording has no video or audio Fathom can give."""

    kind = "fathom_no_media"

    def __init__(self, reason: str, *, status: int | None = 422) -> None:
        super().__init__(reason, status=status)


class FathomDownloadExpired(FathomError):
    """The download or its signed URL expired; asking for a fresh download fixes it."""

    kind = "fathom_download_expired"

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason, transient=True, status=status)


class FathomDownloadIncomplete(FathomError):
    """The video stream ended early or had the wrong size; trying again can help."""

    kind = "download_incomplete"

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason, transient=True, status=status)


def malformed(what: str, detail: str) -> FathomMalformedResponse:
    """The permanent error for an answer that is not the documented shape of ``what``."""
    return FathomMalformedResponse(f"Fathom sent a malformed {what}: {detail}")
