"""Fathom's public API (https://api.fathom.ai/external/v1) as the workers use it.

Errors say whether a retry can help (``transient``) and why, in words; the API key
never appears in a message, URL or repr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class FathomError(Exception):
    """A call to Fathom failed. ``transient`` says whether trying again later can help."""

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

    def __init__(self, reason: str, *, status: int | None = 429, retry_after: float | None):
        super().__init__(reason, transient=True, status=status, retry_after=retry_after)


class FathomUnavailable(FathomError):
    """5xx, timeouts, connection errors: Fathom may answer later."""

    def __init__(
        self, reason: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, transient=True, status=status, retry_after=retry_after)


class FathomRejected(FathomError):
    """4xx other than 429: the same request will fail the same way."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason, transient=False, status=status)


class FathomMalformedResponse(FathomError):
    """Fathom answered with something that is not the documented shape."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason, transient=False, status=status)


class FathomDownloadFailed(FathomError):
    """Fathom could not produce the video (download status ``failed``, generation_failed)."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason, transient=False, status=status)


class FathomDownloadExpired(FathomError):
    """The download or its signed URL expired; asking for a fresh download fixes it."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason, transient=True, status=status)


class FathomDownloadIncomplete(FathomError):
    """The video stream ended early or had the wrong size; trying again can help."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason, transient=True, status=status)


# --- Parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FathomMeeting:
    """One meeting from ``GET /meetings``; ``raw`` keeps the dict exactly as received."""

    recording_id: int
    title: str
    meeting_title: str
    url: str
    share_url: str
    recording_start_time: datetime | None
    recording_end_time: datetime | None
    created_at: datetime | None
    summary: str
    raw: dict[str, Any] = field(repr=False, compare=False)


def _malformed(what: str, detail: str) -> FathomMalformedResponse:
    return FathomMalformedResponse(f"Fathom sent a malformed {what}: {detail}")


def _parse_time(value: object, name: str, what: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _malformed(what, f"{name} is {type(value).__name__}, not a timestamp")
    try:
        # fromisoformat in 3.11 takes the trailing Z that Fathom sends.
        return datetime.fromisoformat(value)
    except ValueError:
        raise _malformed(what, f"{name} {value[:40]!r} is not a timestamp") from None


def _opt_str(data: dict[str, Any], name: str, what: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _malformed(what, f"{name} is {type(value).__name__}, not a string")
    return value


def parse_meeting(data: object) -> FathomMeeting:
    """A meeting from Fathom's JSON: unknown fields ignored, missing optional ones empty.

    Raises a permanent ``FathomMalformedResponse`` when ``data`` is not an object or its
    ``recording_id`` is not an integer.
    """
    if not isinstance(data, dict):
        raise _malformed("meeting", f"expected an object, got {type(data).__name__}")
    recording_id = data.get("recording_id")
    # bool is an int subclass; True is not a recording.
    if not isinstance(recording_id, int) or isinstance(recording_id, bool):
        raise _malformed(
            "meeting", f"recording_id is {type(recording_id).__name__}, not an integer"
        )
    what = f"meeting (recording {recording_id})"
    summary = ""
    default_summary = data.get("default_summary")
    if isinstance(default_summary, dict):
        markdown = default_summary.get("markdown_formatted")
        if isinstance(markdown, str):
            summary = markdown
    elif default_summary is not None:
        raise _malformed(what, "default_summary is not an object")
    title = _opt_str(data, "title", what)
    meeting_title = _opt_str(data, "meeting_title", what)
    return FathomMeeting(
        recording_id=recording_id,
        # Fathom's title is the recording's; the calendar event's title is the fallback.
        title=title or meeting_title,
        meeting_title=meeting_title,
        url=_opt_str(data, "url", what),
        share_url=_opt_str(data, "share_url", what),
        recording_start_time=_parse_time(
            data.get("recording_start_time"), "recording_start_time", what
        ),
        recording_end_time=_parse_time(data.get("recording_end_time"), "recording_end_time", what),
        created_at=_parse_time(data.get("created_at"), "created_at", what),
        summary=summary,
        raw=data,
    )
