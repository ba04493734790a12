"""Fathom's JSON as our types: meetings, pages of meetings and download statuses.

Every parser raises a permanent ``FathomMalformedResponse`` when the JSON is not the
documented shape; unknown fields are ignored.

A meeting is bounded here, before anything touches a database: a recording_id that fits a
bigint, times a datetime can convert, nesting a walk can follow, and no character that
PostgreSQL cannot store (``parse_json`` does the same for the bytes of a webhook delivery).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from queue_app.integrations.fathom.errors import malformed

# Fathom documents recording_id as a positive integer; a signed 64-bit one is what our
# bigint column (PostgreSQL and SQLite alike) holds.
MAX_RECORDING_ID = 2**63 - 1
# A meeting is a few levels deep (meeting, transcript, entry, speaker); 32 leaves Fathom room
# to grow and keeps json.loads and every walk over the data far from Python's recursion limit.
MAX_DEPTH = 32
# A recording's times lie well inside these: far from years 1 and 9999, where converting to
# UTC or to a reader's time zone overflows datetime (on saving, or on every page that shows it).
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2100, 1, 1, tzinfo=UTC)

# NUL (PostgreSQL's text and jsonb refuse it) and lone surrogates (no encoding takes them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# A JSON string, escapes included; possessive, so it never backtracks, and it takes an
# unterminated string to the end, so a hostile body cannot make the scan quadratic.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_SQUARE_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def parse_json(body: bytes, what: str) -> Any:
    """``body`` as JSON, refused (``FathomMalformedResponse``) unless it is UTF-8 JSON
    nested at most ``MAX_DEPTH`` levels and without NaN or Infinity.

    The nesting is measured on the bytes first: json.loads recurses once per level, so
    100,000 opening brackets would raise RecursionError instead of a clear refusal.
    """
    try:
        text = body.decode("utf-8-sig")  # RFC 8259: UTF-8; a leading BOM may be ignored
    except UnicodeDecodeError as exc:
        raise malformed(what, f"it is not UTF-8 (byte {exc.start})") from None
    problem = _nesting_problem(body)
    if problem:
        raise malformed(what, problem)
    try:
        return json.loads(text, parse_constant=_not_a_number)
    except ValueError as exc:  # JSONDecodeError, NaN, an integer of thousands of digits
        raise malformed(what, f"it is not JSON ({str(exc)[:80]})") from None


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _nesting_problem(body: bytes) -> str | None:
    """Why the brackets outside strings in ``body`` cannot be parsed safely, or None.

    Strings are removed, then each pass deletes the innermost pairs, one level a pass
    (C-speed replaces, no recursion): what remains after MAX_DEPTH passes is deeper.
    """
    brackets = _JSON_STRING.sub(b"", body).translate(_SQUARE_BRACKETS, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        if not brackets:
            return None
        inner_removed = brackets.replace(b"[]", b"")
        if len(inner_removed) == len(brackets):
            return "it is not JSON: its brackets are not nested in pairs"
        brackets = inner_removed
    return f"it is nested deeper than {MAX_DEPTH} levels" if brackets else None


def _clean_text(text: str) -> str:
    """``text`` without what no database stores: NUL goes, a lone surrogate becomes U+FFFD.

    Cleaned rather than refused: neither carries meaning in Fathom's free text (titles
    people type, summaries, transcripts), and refusing would lose the whole meeting, again
    at every retry, and fail every later sync of the account.
    """
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(lambda found: "" if found.group() == "\x00" else "\ufffd", text)


def _clean_json(value: object, what: str, depth: int = 1) -> Any:
    """A copy of decoded JSON with every string and key cleaned; refused if it holds what
    JSON does not (NaN, Infinity, non-string keys, other types) or nests past MAX_DEPTH."""
    if isinstance(value, str):
        return _clean_text(value)
    if value is None or isinstance(value, int):  # bool is an int
        return value
    if isinstance(value, float):
        if not math.isfinite(value):  # json.loads makes 1e400 infinite; jsonb refuses both
            raise malformed(what, "it holds a number that is not finite")
        return value
    if depth > MAX_DEPTH:
        raise malformed(what, f"it is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        return [_clean_json(item, what, depth + 1) for item in value]
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise malformed(what, f"it has a {type(key).__name__} key, not a string")
            cleaned[_clean_text(key)] = _clean_json(item, what, depth + 1)
        return cleaned
    raise malformed(what, f"it holds a {type(value).__name__}, which is not JSON")


@dataclass(frozen=True)
class FathomMeeting:
    """One meeting from ``GET /meetings``; ``raw`` keeps the dict as received, cleaned of
    what no database stores (NUL, lone surrogates)."""

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
    # Fathom's meeting type name (a team's own list, /meeting_types), "" when none.
    meeting_type: str = ""
    # The call's link (Zoom, Meet, Teams), as the calendar had it; "" when not sent.
    meeting_url: str = ""
    shared_with: str = ""  # no_teams | single_team | multiple_teams | all_teams
    team: str = ""  # recorded_by.team: the recorder's team, "" when none
    # With include_transcript: [{speaker, text, timestamp}], speaker its display name.
    transcript: list[dict[str, str]] | None = field(default=None, repr=False, compare=False)


def _parse_time(value: object, name: str, what: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise malformed(what, f"{name} is {type(value).__name__}, not a timestamp")
    try:
        # fromisoformat in 3.11 takes the trailing Z that Fathom sends.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise malformed(what, f"{name} {value[:40]!r} is not a timestamp") from None
    if parsed.tzinfo is None:  # Fathom's times are UTC; one without an offset is taken so
        parsed = parsed.replace(tzinfo=UTC)
    if not EARLIEST_TIME <= parsed < LATEST_TIME:
        raise malformed(what, f"{name} {value[:40]!r} is not between 1970 and 2100")
    return parsed


def _opt_str(data: dict[str, Any], name: str, what: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise malformed(what, f"{name} is {type(value).__name__}, not a string")
    return value


def _opt_url(received: dict[str, Any], name: str, what: str) -> str:
    # Read before cleaning: a URL with a character cleaned away would point somewhere else,
    # so it is left out instead.
    url = _opt_str(received, name, what)
    return "" if _UNSTORABLE.search(url) else url


def parse_meeting(data: object) -> FathomMeeting:
    """A meeting from Fathom's JSON: unknown fields ignored, missing optional ones empty,
    strings cleaned of NUL and lone surrogates.

    Raises a permanent ``FathomMalformedResponse`` when ``data`` is not an object, its
    ``recording_id`` is not a positive 64-bit integer, a time is not one between 1970 and
    2100, or it holds what JSON does not or nests deeper than ``MAX_DEPTH``.
    """
    if not isinstance(data, dict):
        raise malformed("meeting", f"expected an object, got {type(data).__name__}")
    recording_id = data.get("recording_id")
    # bool is an int subclass; True is not a recording.
    if not isinstance(recording_id, int) or isinstance(recording_id, bool):
        raise malformed("meeting", f"recording_id is {type(recording_id).__name__}, not an integer")
    if not 1 <= recording_id <= MAX_RECORDING_ID:
        # str() of a huge int is slow, and refused past 4300 digits.
        shown = recording_id if recording_id.bit_length() <= 128 else "of that size"
        raise malformed("meeting", f"recording_id {shown} is not a positive 64-bit integer")
    what = f"meeting (recording {recording_id})"
    received, data = data, _clean_json(data, what)
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
    recorded_by = data.get("recorded_by")
    if recorded_by is not None and not isinstance(recorded_by, dict):
        raise malformed(what, "recorded_by is not an object")
    return FathomMeeting(
        recording_id=recording_id,
        # Fathom's title is the recording's; the calendar event's title is the fallback.
        title=title or meeting_title,
        meeting_title=meeting_title,
        url=_opt_url(received, "url", what),
        share_url=_opt_url(received, "share_url", what),
        recording_start_time=_parse_time(
            data.get("recording_start_time"), "recording_start_time", what
        ),
        recording_end_time=_parse_time(data.get("recording_end_time"), "recording_end_time", what),
        created_at=_parse_time(data.get("created_at"), "created_at", what),
        summary=summary,
        raw=data,
        meeting_type=_opt_str(data, "meeting_type", what),
        meeting_url=_opt_url(received, "meeting_url", what),
        shared_with=_opt_str(data, "shared_with", what),
        team=_opt_str(recorded_by or {}, "team", what),
        transcript=parse_transcript(data.get("transcript"), what),
    )


def parse_transcript(value: object, what: str) -> list[dict[str, str]] | None:
    """Fathom's transcript items as ``{speaker, text, timestamp}`` (speaker: display name);
    None when Fathom sent none (not asked for, or not ready)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise malformed(what, "transcript is not a list")
    items = []
    for item in value:
        if not isinstance(item, dict):
            raise malformed(what, "a transcript item is not an object")
        speaker = item.get("speaker")
        name = speaker.get("display_name") if isinstance(speaker, dict) else speaker
        items.append(
            {
                "speaker": name if isinstance(name, str) else "",
                "text": _opt_str(item, "text", what),
                "timestamp": _opt_str(item, "timestamp", what),
            }
        )
    return items


def parse_meetings_page(
    page: object, *, what: str = "meetings page"
) -> tuple[list[Any], str | None]:
    """One page of a Fathom list (``GET /meetings``, ``/teams``...): its raw items and the
    ``next_cursor`` (None at the end)."""
    if not isinstance(page, dict):
        raise malformed(what, f"expected an object, got {type(page).__name__}")
    items = page.get("items")
    if not isinstance(items, list):
        raise malformed(what, f"items is {type(items).__name__}, not a list")
    cursor = page.get("next_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise malformed(what, f"next_cursor is {type(cursor).__name__}")
    return items, cursor or None


@dataclass(frozen=True)
class DownloadFile:
    """One file of a completed download (``video`` or ``audio``): Fathom's RecordingDownloadFile."""

    url: str
    content_type: str
    file_size_bytes: int | None
    expires_at: datetime | None


@dataclass(frozen=True)
class DownloadStatus:
    """A recording download (``POST /recordings/{id}/download``, its status endpoint, or the
    payload Fathom POSTs to a ``destination_url``): Fathom's RecordingDownload.

    A completed download carries ``video`` when the recording has one; an audio-only
    recording carries ``audio`` and no ``video``. A failed one says why in ``failure_reason``.
    """

    download_id: str
    status: str  # "processing" | "completed" | "failed" | "expired"
    recording_id: int | None
    video: DownloadFile | None
    audio: DownloadFile | None
    failure_reason: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def media(self) -> DownloadFile | None:
        """What to transfer: the video when there is one, else the audio."""
        return self.video or self.audio

    @property
    def media_kind(self) -> str | None:
        """``"video"``, ``"audio"``, or None before the download completed."""
        if self.video is not None:
            return "video"
        return "audio" if self.audio is not None else None

    @property
    def media_url(self) -> str | None:
        """The signed URL of the file to transfer (``media``), once completed."""
        return self.media.url if self.media is not None else None

    @property
    def media_size(self) -> int | None:
        """The announced size of the file to transfer, in bytes."""
        return self.media.file_size_bytes if self.media is not None else None


DOWNLOAD_STATUSES = ("processing", "completed", "failed", "expired")


def _opt_int(data: dict[str, Any], name: str, what: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise malformed(what, f"{name} is {type(value).__name__}, not a size in bytes")
    return value


def _download_file(data: dict[str, Any], name: str, what: str) -> DownloadFile | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise malformed(what, f"{name} is {type(value).__name__}, not an object")
    url = value.get("url")
    if not isinstance(url, str) or not url:
        raise malformed(what, f"{name}.url is {type(url).__name__}, not a URL")
    content_type = value.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        raise malformed(what, f"{name}.content_type is {type(content_type).__name__}")
    return DownloadFile(
        url=url,
        content_type=content_type or "",
        file_size_bytes=_opt_int(value, "file_size_bytes", f"{what} ({name})"),
        expires_at=_parse_time(value.get("expires_at"), f"{name}.expires_at", what),
    )


def parse_download_status(data: object, *, download_id: str | None = None) -> DownloadStatus:
    """A download from Fathom's JSON; permanent ``FathomMalformedResponse`` if wrong."""
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
    recording_id = data.get("recording_id")
    if recording_id is not None and (
        not isinstance(recording_id, int)
        or isinstance(recording_id, bool)
        or not 1 <= recording_id <= MAX_RECORDING_ID
    ):
        raise malformed(what, "recording_id is not a positive 64-bit integer")
    video = _download_file(data, "video", what)
    audio = _download_file(data, "audio", what)
    if status == "completed" and video is None and audio is None:
        raise malformed(what, "a completed download has neither video nor audio")
    # Fathom's FailureReason (generation_failed, generation_timeout); another value is kept
    # as sent, cut short: a newer Fathom may add reasons.
    reason = data.get("failure_reason")
    if reason is not None and not isinstance(reason, str):
        raise malformed(what, f"failure_reason is {type(reason).__name__}, not a string")
    return DownloadStatus(
        download_id=received_id,
        status=status,
        recording_id=recording_id,
        video=video,
        audio=audio,
        failure_reason=_clean_text(reason)[:64] if reason else None,
        raw=data,
    )
