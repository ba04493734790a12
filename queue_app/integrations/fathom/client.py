"""Fathom's public API (https://api.fathom.ai/external/v1) as the workers use it: the HTTP client.

The client raises the errors of ``errors``, turns answers into the types of ``parsing`` and
draws a token from a ``ratelimit.RateLimiter`` (when given one) before every call.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from queue_app.integrations.fathom.errors import (
    FathomDownloadExpired,
    FathomDownloadFailed,
    FathomDownloadIncomplete,
    FathomError,
    FathomMalformedResponse,
    FathomNoAccess,
    FathomNoMedia,
    FathomRateLimited,
    FathomRejected,
    FathomUnavailable,
    malformed,
)
from queue_app.integrations.fathom.metrics import counted
from queue_app.integrations.fathom.parsing import (
    DownloadStatus,
    FathomMeeting,
    parse_download_status,
    parse_json,
    parse_meeting,
    parse_meetings_page,
    parse_transcript,
)

if TYPE_CHECKING:
    from queue_app.integrations.fathom.ratelimit import RateLimiter

try:
    from django.views.decorators.debug import sensitive_variables
except ImportError:  # pragma: no cover - the client is usable without Django

    def sensitive_variables(*names: str) -> Callable[[Any], Any]:
        return lambda function: function


logger = logging.getLogger(__name__)


DEFAULT_BASE_URL = "https://api.fathom.ai/external/v1"


@dataclass(frozen=True)
class CreatedWebhook:
    """What ``POST /webhooks`` answered: the webhook's id, and the secret that signs it."""

    id: str
    secret: str = field(repr=False)
    url: str = ""


def download_failed(recording_id: int, failure_reason: str | None) -> FathomDownloadFailed:
    """The error for a ``failed`` download, in words its owner understands."""
    if failure_reason == "generation_timeout":
        return FathomDownloadFailed(
            f"Fathom took too long to prepare the file of recording {recording_id} "
            "(generation_timeout); a new download is requested at the next try.",
            failure_reason=failure_reason,
            transient=True,
        )
    if failure_reason == "generation_failed":
        return FathomDownloadFailed(
            f"Fathom could not produce a file of recording {recording_id} "
            "(generation_failed); trying again will not help. Check the recording in Fathom, "
            "or ask Fathom's support.",
            failure_reason=failure_reason,
        )
    why = f"reason {failure_reason!r}" if failure_reason else "Fathom gave no reason"
    return FathomDownloadFailed(
        f"Fathom could not prepare the file of recording {recording_id} ({why}).",
        failure_reason=failure_reason,
    )


@dataclass(frozen=True)
class DownloadedFile:
    """A video ``download_video`` wrote: where, how many bytes, and their SHA-256."""

    path: Path
    size: int
    sha256: str


def _default_base_url() -> str:
    try:
        from django.conf import settings

        return getattr(settings, "FATHOM_API_BASE_URL", DEFAULT_BASE_URL)
    except ImportError:  # pragma: no cover - the client is usable without Django
        return DEFAULT_BASE_URL


def _seconds(value: str | None) -> float | None:
    """Retry-After / RateLimit-Reset as seconds: a number, or an HTTP date for Retry-After."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _query_time(value: datetime) -> str:
    # Fathom takes ISO 8601 in UTC; a naive datetime is taken to be UTC already.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FathomClient:
    """Fathom's API for one API key. Raises ``FathomError`` and never sleeps on a 429:
    the caller decides when to try again (``retry_after``)."""

    # Every local, and every local of what it calls: httpx gets the key as a header.
    @sensitive_variables()
    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        limiter: RateLimiter | None = None,
    ) -> None:
        # The key becomes the X-Api-Key header: printable ASCII without spaces, as Fathom
        # issues them. Anything else fails in httpx (UnicodeEncodeError) or, a newline, splits
        # the header. The message names no character of the key.
        if not (api_key and api_key.isascii() and api_key.isprintable() and " " not in api_key):
            raise ValueError("a Fathom API key is required: printable ASCII without spaces")
        self._api_key = api_key
        self.base_url = (base_url or _default_base_url()).rstrip("/")
        self.timeout = timeout
        self.limiter = limiter
        self.key_fingerprint = hashlib.sha256(api_key.encode()).hexdigest()[:16]
        self._api = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers={"X-Api-Key": api_key, "Accept": "application/json"},
            follow_redirects=False,
        )
        # The signed video URL is another host's (a CDN's): it must never see the key.
        self._video = httpx.Client(timeout=timeout, follow_redirects=True)

    def __repr__(self) -> str:
        return f"FathomClient(base_url={self.base_url!r}, key=sha256:{self.key_fingerprint})"

    def close(self) -> None:
        self._api.close()
        self._video.close()

    def __enter__(self) -> FathomClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "[API key]")

    def _request(
        self,
        method: str,
        path: str,
        *,
        doing: str,
        subject: str,
        params: list[tuple[str, str]] | None = None,
        json_body: dict[str, Any] | None = None,
        buckets: tuple[str, ...] = ("api",),
    ) -> Any:
        """One API call; returns the decoded JSON or raises the matching ``FathomError``.

        ``doing`` ("listing meetings") and ``subject`` ("recording 1001") make the reasons.
        """
        if self.limiter is not None:
            for bucket in buckets:
                self.limiter.acquire(bucket, key_fingerprint=self.key_fingerprint)
        try:
            response = counted(self._api.request, method, path, params=params, json=json_body)
        except httpx.TimeoutException as exc:
            raise FathomUnavailable(
                f"Fathom did not answer within {self.timeout:g} s while {doing} "
                f"({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise FathomUnavailable(
                f"Could not reach Fathom while {doing} ({type(exc).__name__})"
            ) from None
        status = response.status_code
        logger.debug("Fathom %s %s -> %s", method, path, status)
        if status >= 300:
            raise self._status_error(response, doing=doing, subject=subject)
        if status == 204 or not response.content:
            return None
        # Bounded parsing: 100,000 nested brackets from a broken or hostile answer must be a
        # clear FathomMalformedResponse, not a RecursionError that fails the sync with a 500.
        try:
            return parse_json(response.content, "answer")
        except FathomMalformedResponse:
            raise FathomMalformedResponse(
                f"Fathom sent malformed JSON while {doing} ({status})", status=status
            ) from None

    def _status_error(self, response: httpx.Response, *, doing: str, subject: str) -> FathomError:
        status = response.status_code
        retry_after = _seconds(response.headers.get("Retry-After"))
        if retry_after is None and status == 429:
            # RateLimit-Reset is when the window refills: a hint only when the window is full.
            retry_after = _seconds(response.headers.get("RateLimit-Reset"))
        detail = ""
        try:
            body = parse_json(response.content, "error answer")
            message = body.get("error") or body.get("message") if isinstance(body, dict) else None
            if isinstance(message, str) and message:
                detail = ": " + self._scrub(message)[:200]
        except (FathomMalformedResponse, httpx.ResponseNotRead):
            pass
        if status == 429:
            wait = f"retry in {retry_after:g} s" if retry_after is not None else "retry later"
            return FathomRateLimited(
                f"Fathom's rate limit was reached while {doing}; {wait} (429)",
                retry_after=retry_after,
            )
        if status >= 500:
            return FathomUnavailable(
                f"Fathom failed with {status} while {doing}", status=status, retry_after=retry_after
            )
        if status == 401:
            return FathomRejected("Fathom refused the API key (401)", status=status)
        if status == 403:
            return FathomRejected(
                f"Fathom denied access to {subject} with this API key (403)", status=status
            )
        if status == 404:
            return FathomRejected(f"Fathom has no {subject} (404)", status=status)
        if status in (400, 422):
            return FathomRejected(
                f"Fathom rejected the request while {doing} ({status}){detail}", status=status
            )
        return FathomRejected(
            f"Fathom answered an unexpected {status} while {doing}{detail}", status=status
        )

    # --- meetings -------------------------------------------------------------------------

    def iter_meetings(
        self,
        *,
        include_summary: bool = False,
        include_transcript: bool = False,
        include_action_items: bool = False,
        include_crm_matches: bool = False,
        include_highlights: bool = False,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        recorded_by: list[str] | None = None,
        teams: list[str] | None = None,
        calendar_invitees_domains: list[str] | None = None,
        calendar_invitees_domains_type: str | None = None,
        meeting_type: str | None = None,
    ) -> Iterator[FathomMeeting]:
        """Every meeting the key can see, newest first, following ``next_cursor`` to the end.

        Pages are Fathom's own size: it documents no page-size parameter, so none is sent.
        ``calendar_invitees_domains_type`` is ``all``, ``only_internal`` or
        ``one_or_more_external``; ``meeting_type`` a meeting type's name.
        """
        params: list[tuple[str, str]] = []
        for name, flag in (
            ("include_summary", include_summary),
            ("include_transcript", include_transcript),
            ("include_action_items", include_action_items),
            ("include_crm_matches", include_crm_matches),
            ("include_highlights", include_highlights),
        ):
            if flag:
                params.append((name, "true"))
        if created_after is not None:
            params.append(("created_after", _query_time(created_after)))
        if created_before is not None:
            params.append(("created_before", _query_time(created_before)))
        params.extend(("recorded_by[]", email) for email in recorded_by or ())
        params.extend(("teams[]", team) for team in teams or ())
        params.extend(
            ("calendar_invitees_domains[]", domain) for domain in calendar_invitees_domains or ()
        )
        if calendar_invitees_domains_type is not None:
            params.append(("calendar_invitees_domains_type", calendar_invitees_domains_type))
        if meeting_type is not None:
            params.append(("meeting_type", meeting_type))
        for item in self._paged_items("/meetings", params, doing="listing meetings"):
            yield parse_meeting(item)

    def _paged_items(
        self, path: str, params: list[tuple[str, str]], *, doing: str
    ) -> Iterator[Any]:
        """The raw items of every page of a ``{limit, next_cursor, items}`` list."""
        cursor: str | None = None
        seen: set[str] = set()
        what = path.strip("/")
        while True:
            page_params = [*params, ("cursor", cursor)] if cursor else params
            page = self._request("GET", path, params=page_params, doing=doing, subject=what)
            items, cursor = parse_meetings_page(page, what=f"{what} page")
            yield from items
            if not cursor:
                return
            if cursor in seen:
                # A cursor that comes back would page forever.
                raise FathomMalformedResponse(
                    f"Fathom sent a malformed {what} page: next_cursor repeats an earlier one"
                )
            seen.add(cursor)

    def check_key(self) -> None:
        """One cheap call that succeeds only with a working key; ``FathomError`` (401) if not.

        The first page of meetings: Fathom documents no page-size parameter to make it
        smaller, and sending an undocumented one could be refused.
        """
        page = self._request("GET", "/meetings", doing="checking the API key", subject="meetings")
        parse_meetings_page(page)

    # --- teams, summaries, transcripts ---------------------------------------------------

    def iter_teams(self) -> Iterator[dict[str, Any]]:
        """``GET /teams``: ``{name, created_at}`` of every team the key's user can see."""
        for item in self._paged_items("/teams", [], doing="listing teams"):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise malformed("team", "it has no name")
            yield item

    def iter_team_members(self, *, team: str | None = None) -> Iterator[dict[str, Any]]:
        """``GET /team_members``: ``{name, email, created_at}``, of ``team`` when given."""
        params = [("team", team)] if team is not None else []
        for item in self._paged_items("/team_members", params, doing="listing team members"):
            if not isinstance(item, dict) or not isinstance(item.get("email"), str):
                raise malformed("team member", "it has no email")
            yield item

    def get_summary(self, recording_id: int) -> str | None:
        """The recording's summary as Markdown (``GET /recordings/{id}/summary``), or None."""
        data = self._request(
            "GET",
            f"/recordings/{int(recording_id)}/summary",
            doing=f"reading the summary of recording {recording_id}",
            subject=f"recording {recording_id}",
        )
        summary = data.get("summary") if isinstance(data, dict) else None
        if summary is None:
            return None
        markdown = summary.get("markdown_formatted") if isinstance(summary, dict) else None
        if markdown is not None and not isinstance(markdown, str):
            raise malformed("summary", "markdown_formatted is not a string")
        return markdown

    def get_transcript(self, recording_id: int) -> list[dict[str, str]]:
        """The transcript (``GET /recordings/{id}/transcript``) as {speaker, text, timestamp}."""
        data = self._request(
            "GET",
            f"/recordings/{int(recording_id)}/transcript",
            doing=f"reading the transcript of recording {recording_id}",
            subject=f"recording {recording_id}",
        )
        if not isinstance(data, dict):
            raise malformed("transcript", f"expected an object, got {type(data).__name__}")
        return parse_transcript(data.get("transcript"), "transcript") or []

    # --- webhooks -------------------------------------------------------------------------

    def create_webhook(
        self,
        destination_url: str,
        *,
        triggered_for: list[str],
        include_transcript: bool = False,
        include_summary: bool = False,
        include_action_items: bool = False,
        include_crm_matches: bool = False,
    ) -> CreatedWebhook:
        """``POST /webhooks``: Fathom's new webhook, with the secret it signs deliveries with."""
        data = self._request(
            "POST",
            "/webhooks",
            json_body={
                "destination_url": destination_url,
                "triggered_for": list(triggered_for),
                "include_transcript": include_transcript,
                "include_summary": include_summary,
                "include_action_items": include_action_items,
                "include_crm_matches": include_crm_matches,
            },
            doing="creating the webhook",
            subject="webhooks",
        )
        if not isinstance(data, dict):
            raise malformed("webhook", f"expected an object, got {type(data).__name__}")
        webhook_id, secret = data.get("id"), data.get("secret")
        if not isinstance(webhook_id, str) or not webhook_id or len(webhook_id) > 255:
            raise malformed("webhook", "id is not a string")
        if not isinstance(secret, str) or not secret:
            raise malformed("webhook", "secret is not a string")
        return CreatedWebhook(id=webhook_id, secret=secret, url=str(data.get("url") or ""))

    def delete_webhook(self, webhook_id: str) -> None:
        """``DELETE /webhooks/{id}``; a webhook already gone (404) counts as deleted."""
        try:
            self._request(
                "DELETE",
                f"/webhooks/{quote(webhook_id, safe='')}",
                doing="deleting the webhook",
                subject="webhook",
            )
        except FathomRejected as exc:
            if exc.status != 404:
                raise

    # --- downloads ------------------------------------------------------------------------

    def request_download(
        self, recording_id: int, *, destination_url: str | None = None
    ) -> DownloadStatus:
        """Asks Fathom for a downloadable file of the recording; returns its first answer.

        That answer may already be ``completed`` (audio-only recordings finish at once):
        use it, no polling. With ``destination_url`` Fathom also POSTs the completed
        download there, signed like its webhooks.
        """
        try:
            data = self._request(
                "POST",
                f"/recordings/{int(recording_id)}/download",
                json_body={"destination_url": destination_url} if destination_url else None,
                doing=f"requesting the file of recording {recording_id}",
                subject=f"recording {recording_id}",
                buckets=("api", "download"),
            )
        except FathomRejected as exc:
            if exc.status == 403:
                raise FathomNoAccess(
                    f"Fathom does not let this account download recording {recording_id}: it "
                    "was shared with you with limited access, which allows watching only. Ask "
                    "its owner for standard access, then retry (403)."
                ) from None
            if exc.status == 422:
                raise FathomNoMedia(
                    f"There is nothing to transfer: recording {recording_id} has no video or "
                    "audio that Fathom can give (422)."
                ) from None
            raise
        return parse_download_status(data)

    def get_download(self, recording_id: int, download_id: str) -> DownloadStatus:
        """Where a requested download stands."""
        data = self._request(
            "GET",
            f"/recordings/{int(recording_id)}/downloads/{quote(download_id, safe='')}",
            doing=f"checking the download of recording {recording_id}",
            subject=f"download {download_id} of recording {recording_id}",
        )
        return parse_download_status(data, download_id=download_id)

    def settle_download(self, status: DownloadStatus, recording_id: int) -> DownloadStatus | None:
        """``status`` if completed, None while processing; raises for failed and expired.

        ``failed`` raises ``FathomDownloadFailed`` saying why in the owner's words
        (transient for ``generation_timeout``); ``expired`` a transient
        ``FathomDownloadExpired`` (a new download has to be requested).
        """
        if status.status == "completed":
            return status
        if status.status == "failed":
            raise download_failed(recording_id, status.failure_reason)
        if status.status == "expired":
            raise FathomDownloadExpired(
                f"Fathom's download of recording {recording_id} expired; "
                "a new one has to be requested"
            )
        return None

    def wait_for_download(
        self,
        recording_id: int,
        download_id: str,
        *,
        poll_interval: float = 2.0,
        timeout: float = 600.0,
        on_poll: Callable[[DownloadStatus], None] | None = None,
    ) -> DownloadStatus:
        """Polls until the download is ``completed`` and returns that status.

        ``failed`` and ``expired`` raise as ``settle_download`` says; running out of
        ``timeout`` raises a transient error (ask for a new download later).
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.get_download(recording_id, download_id)
            if on_poll is not None:
                on_poll(status)
            if self.settle_download(status, recording_id) is not None:
                return status
            if time.monotonic() + poll_interval > deadline:
                raise FathomUnavailable(
                    f"Fathom was still preparing the file of recording {recording_id} "
                    f"after {timeout:g} s"
                )
            time.sleep(poll_interval)

    def download_video(
        self,
        url: str,
        dest: Path,
        *,
        expected_size: int | None,
        on_progress: Callable[[int, int | None], None] | None = None,
        chunk_size: int = 1 << 16,
    ) -> DownloadedFile:
        """Streams the signed video URL to ``dest`` (without the API key), checking its size.

        The bytes go to ``<dest>.part`` first and are renamed on success, so ``dest`` never
        holds a partial file; on any failure the partial file is deleted.
        """
        dest = Path(dest)
        partial = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        received = 0
        response: httpx.Response | None = None
        try:
            with self._video.stream("GET", url) as response:
                status = response.status_code
                if status in (403, 410):
                    raise FathomDownloadExpired(
                        f"The signed video URL was refused ({status}); it has probably "
                        "expired, so a new download has to be requested",
                        status=status,
                    )
                if status >= 300:
                    response.read()  # an error body is small; _status_error reads its message
                    raise self._status_error(
                        response, doing="downloading the video", subject="video at that URL"
                    )
                length = response.headers.get("Content-Length")
                announced = int(length) if length and length.isdigit() else None
                if (
                    expected_size is not None
                    and announced is not None
                    and announced != expected_size
                ):
                    raise FathomDownloadIncomplete(
                        f"The video is {announced} bytes but Fathom announced "
                        f"{expected_size}; not downloading it",
                        status=status,
                    )
                total = expected_size if expected_size is not None else announced
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(chunk_size):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        if on_progress is not None:
                            on_progress(received, total)
            if total is not None and received != total:
                raise FathomDownloadIncomplete(
                    f"The video download stopped at {received} of {total} bytes"
                )
            os.replace(partial, dest)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            # Bytes off the wire, including those still buffered for the next chunk.
            got = response.num_bytes_downloaded if response is not None else received
            of = f" of {expected_size}" if expected_size is not None else ""
            how = "stalled" if isinstance(exc, httpx.TimeoutException) else "broke off"
            raise FathomDownloadIncomplete(
                f"The video download {how} after {got}{of} bytes ({type(exc).__name__})"
            ) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return DownloadedFile(path=dest, size=received, sha256=digest.hexdigest())
