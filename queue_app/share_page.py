"""The share link as a page worth sending: /share/<token> opens an HTML page with the
player, the meeting's title, date, length and who recorded it, Fathom's summary and
transcript (following playback), a download link, and Open Graph and oEmbed metadata so
a link pasted in chat unfurls. The raw file is at /share/<token>/media, with ranges
(served by queue_app.share, which this module calls), and still at /share/<token> itself
for players, which ask without text/html (or with a Range).

Each meeting's owner chooses who may open it (Meeting.share_access): anyone with the link
(the default), or signed-in users only.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from csp.constants import SELF
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_safe

from queue_app import share
from queue_app.integrations.recordings import (
    SHARE_TOKEN_PATTERN,
    media_origin,
    recording_name,
    recordings_storage,
)
from queue_app.models import EntryStatus, Meeting, QueueEntry

# What an unfurl shows of the summary.
DESCRIPTION_CHARS = 200
_TIMESTAMP = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{2})(?:\.\d+)?$")


def meeting_of_token(token: str) -> Meeting | None:
    """The meeting whose completed transfer made this share link, or None."""
    if not SHARE_TOKEN_PATTERN.match(token):
        return None
    entry = (
        QueueEntry.objects.filter(
            status=EntryStatus.COMPLETED, result_url__endswith=f"/share/{token}"
        )
        .select_related("meeting", "meeting__owner")
        .order_by("-finished_at")
        .first()
    )
    return entry.meeting if entry is not None else None


def may_open(request: HttpRequest, meeting: Meeting | None) -> bool:
    """Anyone may open an open link; a signed-in-only one needs a signed-in user. A file
    with no meeting on record (stored before pages existed) stays open, as it was."""
    if meeting is None or meeting.share_access != "signed_in":
        return True
    return bool(request.user.is_authenticated)


# --- what the page shows ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cue:
    start: float
    speaker: str
    text: str
    stamp: str


def seconds_of(stamp: Any) -> float | None:
    """Seconds of a transcript timestamp ("00:01:05", "1:05", 65), or None."""
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        return float(stamp) if stamp >= 0 else None
    if not isinstance(stamp, str):
        return None
    match = _TIMESTAMP.match(stamp.strip())
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def transcript_of(meeting: Meeting) -> list[Cue]:
    """The transcript as cues in time order, from `Meeting.transcript` when the model has
    it (a list as Fathom sends it, or its JSON), else from the stored Fathom answer;
    anything malformed is skipped, never an error."""
    raw = meeting.transcript
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):
            raw = json.loads(raw) if raw.strip().startswith("[") else raw
    if not raw and isinstance(meeting.raw, dict):
        raw = meeting.raw.get("transcript")
    if isinstance(raw, str):  # plain text: one cue, no times
        return [Cue(0.0, "", raw.strip(), "")] if raw.strip() else []
    cues = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            continue
        start = seconds_of(item.get("timestamp"))
        speaker = item.get("speaker")
        name = speaker.get("display_name") if isinstance(speaker, dict) else speaker
        cues.append(
            Cue(
                start=start if start is not None else 0.0,
                speaker=name if isinstance(name, str) else "",
                text=item["text"],
                stamp=_clock(start) if start is not None else "",
            )
        )
    return sorted(cues, key=lambda cue: cue.start)


def summary_blocks(meeting: Meeting) -> list[dict[str, Any]]:
    """Fathom's summary (markdown) as plain blocks: headings, lists and paragraphs. The
    text is never markup: the template escapes it."""
    text = meeting.summary or ""
    if not isinstance(text, str):
        return []
    blocks: list[dict[str, Any]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            heading = stripped.lstrip("#").strip()
            # Fathom's summaries open with "## Summary": the section's own heading says it.
            if not blocks and heading.lower() == "summary":
                continue
            blocks.append({"kind": "heading", "text": heading})
        elif stripped[:2] in ("- ", "* "):
            item = stripped[2:].strip()
            if blocks and blocks[-1]["kind"] == "list":
                blocks[-1]["items"].append(item)
            else:
                blocks.append({"kind": "list", "items": [item]})
        else:
            blocks.append({"kind": "paragraph", "text": stripped.replace("**", "")})
    return blocks


def _plain_summary(meeting: Meeting) -> str:
    parts = []
    for block in summary_blocks(meeting):
        if block["kind"] == "paragraph":
            parts.append(block["text"])
        elif block["kind"] == "list":
            parts.extend(block["items"])
    text = " ".join(parts)
    if len(text) > DESCRIPTION_CHARS:
        text = text[: DESCRIPTION_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return text


def recorded_by(meeting: Meeting) -> str:
    """Who recorded it, as Fathom names them (`recorded_by.name`), or ""."""
    who = meeting.raw.get("recorded_by") if isinstance(meeting.raw, dict) else None
    if isinstance(who, dict) and isinstance(who.get("name"), str):
        return who["name"]
    return ""


def _duration_text(seconds: int | None) -> str:
    if not seconds:
        return ""
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min" if minutes else f"{seconds} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _absolute(request: HttpRequest, path: str) -> str:
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return f"{base}{path}" if base else request.build_absolute_uri(path)


def _audio_only(meeting: Meeting) -> bool:
    """The transfer moved audio only (Fathom's download had no video), or an older
    Fathom answer marked the recording so."""
    if meeting.media_kind == "audio":
        return True
    raw = meeting.raw if isinstance(meeting.raw, dict) else {}
    return raw.get("media_type") == "audio" or raw.get("audio_only") is True


# --- the views ----------------------------------------------------------------------------


# Link unfurlers (chat apps, social sites) that fetch a pasted link for its metadata,
# some with `Accept: */*`: they get the page, whose Open Graph tags they read.
_UNFURLERS = re.compile(
    r"bot\b|facebookexternalhit|slack|discord|twitter|whatsapp|telegram|embedly|linkedin"
    r"|mastodon|skype|teams|iframely",
    re.IGNORECASE,
)


def _wants_page(request: HttpRequest) -> bool:
    """A person's browser (text/html) or a link unfurler, not a player asking for bytes
    (a Range, or neither)."""
    if "Range" in request.headers:
        return False
    if "text/html" in request.headers.get("Accept", ""):
        return True
    return bool(_UNFURLERS.search(request.headers.get("User-Agent", "")))


def _refusal(request: HttpRequest) -> HttpResponse:
    if _wants_page(request):
        return redirect_to_login(request.get_full_path())
    return HttpResponse("Sign in to watch this recording.", status=403, content_type="text/plain")


@require_safe
def share_page(request: HttpRequest, token: str) -> HttpResponse:
    """/share/<token>: the page for people, the file for players."""
    meeting = meeting_of_token(token)
    if not may_open(request, meeting):
        return _refusal(request)
    if not _wants_page(request) or meeting is None:
        return share.share(request, token)
    name = recording_name(token)
    if name is None or not recordings_storage().exists(name):
        raise Http404("No such video.")
    page_url = _absolute(request, reverse("share", args=[token]))
    media_url = reverse("share-media", args=[token])
    title = str(meeting)
    description = _plain_summary(meeting) or f"A recording shared from fathomloom: {title}"
    cues = transcript_of(meeting)
    page = render(
        request,
        "queue_app/share.html",
        {
            "meeting": meeting,
            "title": title,
            "description": description,
            "recorded_by": recorded_by(meeting),
            "duration_text": _duration_text(meeting.duration_seconds),
            "summary": summary_blocks(meeting),
            "cues": cues,
            "timed": any(cue.stamp for cue in cues),
            "audio_only": _audio_only(meeting),
            "page_url": page_url,
            "media_url": media_url,
            "media_absolute_url": _absolute(request, media_url),
            "download_url": f"{media_url}?download=1",
            "card_url": _absolute(request, settings.STATIC_URL + "queue_app/share-card.png"),
            "oembed_url": _absolute(request, reverse("oembed"))
            + "?"
            + urlencode({"url": page_url, "format": "json"}),
            "is_owner": request.user.is_authenticated and request.user.pk == meeting.owner_id,
            "access_api": reverse("api:meeting-share", args=[meeting.pk]),
            "share_access": meeting.share_access,
        },
    )
    # On S3 the player follows a redirect to the bucket's signed URL: the page's CSP must
    # let media load from there (the filesystem serves from this origin: 'self').
    origin = media_origin()
    if origin is not None:
        page._csp_update = {"media-src": [SELF, origin]}
    return page


@require_safe
def share_media(request: HttpRequest, token: str) -> HttpResponse:
    """/share/<token>/media: the raw file, with ranges; `?download=1` saves it."""
    meeting = meeting_of_token(token)
    if not may_open(request, meeting):
        return HttpResponse(
            "Sign in to watch this recording.", status=403, content_type="text/plain"
        )
    response = share.share(request, token)
    if request.GET.get("download") == "1" and response.status_code == 200:
        name = slugify(str(meeting) if meeting else "recording") or "recording"
        response["Content-Disposition"] = f'attachment; filename="{name}.mp4"'
    return response


@require_safe
def oembed(request: HttpRequest) -> HttpResponse:
    """oEmbed (https://oembed.com) for share pages: a link with a title and a picture, so a
    pasted link unfurls. JSON only (`format=xml` is 501, as the spec says)."""
    if request.GET.get("format", "json") != "json":
        return HttpResponse("Only JSON.", status=501, content_type="text/plain")
    url = request.GET.get("url", "")
    match = re.fullmatch(r"/share/([A-Za-z0-9_-]{32,64})/?", urlsplit(url).path or "")
    meeting = meeting_of_token(match.group(1)) if match else None
    # Someone else's host, no such link, or a link for signed-in users: all "not found",
    # so a title is never told to whoever may not open the page.
    if meeting is None or meeting.share_access != "anyone":
        return JsonResponse({"code": "not_found", "detail": "No such share link."}, status=404)
    if urlsplit(url).netloc and urlsplit(url).netloc not in (
        urlsplit(settings.PUBLIC_BASE_URL).netloc,
        request.get_host(),
    ):
        return JsonResponse({"code": "not_found", "detail": "No such share link."}, status=404)
    body = {
        "version": "1.0",
        "type": "link",
        "title": str(meeting),
        "provider_name": "fathomloom",
        "provider_url": _absolute(request, "/"),
        "thumbnail_url": _absolute(request, settings.STATIC_URL + "queue_app/share-card.png"),
        "thumbnail_width": 1200,
        "thumbnail_height": 630,
    }
    if author := recorded_by(meeting):
        body["author_name"] = author
    return JsonResponse(body)
