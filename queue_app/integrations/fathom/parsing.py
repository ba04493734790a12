"""Fathom's JSON as our types: meetings, pages of meetings and download statuses.

Every parser raises a permanent ``FathomMalformedResponse`` when the JSON is not the
documented shape; unknown fields are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from queue_app.integrations.fathom.errors import malformed


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


def _parse_time(value: object, name: str, what: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise malformed(what, f"{name} is {type(value).__name__}, not a timestamp")
    try:
        # fromisoformat in 3.11 takes the trailing Z that Fathom sends.
        return datetime.fromisoformat(value)
    except ValueError:
        raise malformed(what, f"{name} {value[:40]!r} is not a timestamp") from None


def _opt_str(data: dict[str, Any], name: str, what: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise malformed(what, f"{name} is {type(value).__name__}, not a string")
    return value


def parse_meeting(data: object) -> FathomMeeting:
    """A meeting from Fathom's JSON: unknown fields ignored, missing optional ones empty.

    Raises a permanent ``FathomMalformedResponse`` when ``data`` is not an object or its
    ``recording_id`` is not an integer.
    """
    if not isinstance(data, dict):
        raise malformed("meeting", f"expected an object, got {type(data).__name__}")
    recording_id = data.get("recording_id")
    # bool is an int subclass; True is not a recording.
    if not isinstance(recording_id, int) or isinstance(recording_id, bool):
        raise malformed("meeting", f"recording_id is {type(recording_id).__name__}, not an integer")
    what = f"meeting (recording {recording_id})"
    summary = ""
    default_summary = data.get("default_summary")
    if isinstance(default_summary, dict):
        markdown = default_summary.get("markdown_formatted")
        if isinstance(markdown, str):
            summary = markdown
    elif default_summary is not None:
        raise malformed(what, "default_summary is not an object")
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


def parse_meetings_page(page: object) -> tuple[list[Any], str | None]:
    """One page of ``GET /meetings``: its raw items and the ``next_cursor`` (None at the end)."""
    if not isinstance(page, dict):
        raise malformed("meetings page", f"expected an object, got {type(page).__name__}")
    items = page.get("items")
    if not isinstance(items, list):
        raise malformed("meetings page", f"items is {type(items).__name__}, not a list")
    cursor = page.get("next_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise malformed("meetings page", f"next_cursor is {type(cursor).__name__}")
    return items, cursor or None


@dataclass(frozen=True)
class DownloadStatus:
    """``GET /recordings/{id}/downloads/{download_id}``: where the video file stands."""

    download_id: str
    status: str  # "processing" | "completed" | "failed" | "expired"
    video_url: str | None
    file_size_bytes: int | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    error_code: str | None = None  # e.g. "generation_failed" when status is "failed"
    error_message: str | None = None


DOWNLOAD_STATUSES = ("processing", "completed", "failed", "expired")


def _opt_int(data: dict[str, Any], name: str, what: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise malformed(what, f"{name} is {type(value).__name__}, not a size in bytes")
    return value


def parse_download_status(data: object, *, download_id: str | None = None) -> DownloadStatus:
    """A download's status from Fathom's JSON; permanent ``FathomMalformedResponse`` if wrong."""
    what = "download status"
    if not isinstance(data, dict):
        raise malformed(what, f"expected an object, got {type(data).__name__}")
    status = data.get("status")
    if status not in DOWNLOAD_STATUSES:
        shown = status if isinstance(status, str) else type(status).__name__
        raise malformed(what, f"status {str(shown)[:40]!r} is none of {DOWNLOAD_STATUSES}")
    received_id = data.get("download_id", download_id)
    if not isinstance(received_id, str) or not received_id:
        raise malformed(what, f"download_id is {type(received_id).__name__}, not a string")
    video = data.get("video")
    if video is None:
        video = {}
    if not isinstance(video, dict):
        raise malformed(what, "video is not an object")
    url = video.get("url", data.get("video_url"))
    if url is not None and not isinstance(url, str):
        raise malformed(what, f"video.url is {type(url).__name__}, not a string")
    size = _opt_int(video, "file_size_bytes", what)
    if size is None:
        size = _opt_int(data, "file_size_bytes", what)
    if status == "completed" and not url:
        raise malformed(what, "a completed download has no video.url")
    error = data.get("error")
    error_code = error_message = None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        error_code = code if isinstance(code, str) else None
        error_message = message if isinstance(message, str) else None
    elif isinstance(error, str):
        error_code = error
    return DownloadStatus(
        download_id=received_id,
        status=status,
        video_url=url,
        file_size_bytes=size,
        raw=data,
        error_code=error_code,
        error_message=error_message,
    )
