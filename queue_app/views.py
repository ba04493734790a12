"""Server-rendered pages: my meetings, the live queue, and the staff monitor.

Each page renders the state it starts from (a snapshot with its `seq`) into the HTML;
the page's script draws it at once and connects with `?last_seq=<seq>`, so the server
replays exactly what changed between rendering and connecting.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from queue_app import accounts, estimates, history, selectors, stats
from queue_app.api.serializers import MAX_BULK, MeetingFiltersSerializer
from queue_app.metrics import scrape_registry
from queue_app.models import TransferAttempt

# The monitor's throughput, failures and mean wait cover this window.
MONITOR_WINDOW = timedelta(hours=1)
ZERO_ID = "00000000-0000-0000-0000-000000000000"
# Rows per page of the monitor's line and failed list.
MONITOR_PAGE_SIZE = 50
MONITOR_MAX_PAGE_SIZE = 500


def _client_config(request: HttpRequest) -> dict[str, Any]:
    """What the page's script needs besides the snapshot: ETAs use the same formula as
    selectors.eta_seconds, so a position that changes by an event gets a fresh ETA."""
    return {
        "user_id": str(request.user.pk),
        "is_staff": bool(request.user.is_staff),
        "mean_transfer_seconds": selectors.average_transfer_seconds(),
        "concurrency": settings.QUEUE_CONCURRENCY,
        "login_url": f"{settings.LOGIN_URL}?next={request.path}",
    }


@login_required
@require_safe
def landing(request: HttpRequest) -> HttpResponse:
    """Where signing in leads (LOGIN_REDIRECT_URL): staff to the monitor, users to their
    meetings."""
    return redirect("monitor" if request.user.is_staff else "home")


# My meetings shows the library in pages of this many: a whole library on one page was
# 150 px a meeting (60 meetings made a 9,000 px page).
MEETINGS_PAGE_SIZE = 25
LIBRARY_FILTERS = ("search", "state", "recorded_from", "recorded_to", "team")


def _library_filters(request: HttpRequest) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The filters in the page's URL, checked as GET /api/meetings checks them: the valid
    ones (for the selector), as text (for the form and links), and what was wrong with
    the rest (dropped, and said on the page)."""
    given = {
        name: request.GET[name].strip()
        for name in LIBRARY_FILTERS
        if request.GET.get(name, "").strip()
    }
    problems: list[str] = []
    query = MeetingFiltersSerializer(data=given)
    if not query.is_valid():
        for name, messages in query.errors.items():
            given.pop(name, None)
            problems.extend(f"{name.replace('_', ' ')}: {message}" for message in messages)
        query = MeetingFiltersSerializer(data=given)
        query.is_valid()  # what is left is valid: each field is checked on its own
    return dict(query.validated_data), given, problems


def _page_number(request: HttpRequest) -> int:
    raw = request.GET.get("page", "1")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 9 else 1


def _meeting_row(row: dict[str, Any]) -> dict[str, Any]:
    meeting = row["meeting"]
    return {
        "id": meeting.pk,
        "title": str(meeting),
        "recorded_at": meeting.recording_start_time,
        "duration_minutes": round((meeting.duration_seconds or 0) / 60) or None,
        "url": meeting.url,
        "team": meeting.team,
    }


@login_required
@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """My meetings: connect Fathom, sync; find meetings (search, filters, pages), select
    them and queue them in one go; cancel, retry, share links."""
    filters, filter_text, problems = _library_filters(request)
    page = selectors.meetings_page_for(
        user=request.user,
        filters=filters,
        page=_page_number(request),
        page_size=MEETINGS_PAGE_SIZE,
    )

    def page_url(number: int) -> str:
        return "?" + urlencode({**filter_text, **({"page": number} if number > 1 else {})})

    first = (page["page"] - 1) * MEETINGS_PAGE_SIZE
    fathom = accounts.fathom_account_status(request.user)
    return render(
        request,
        "queue_app/meetings.html",
        {
            "nav": "meetings",
            "meetings": [_meeting_row(row) for row in page["meetings"]],
            "library": {
                "count": f"{page['count']:,}",
                "page": page["page"],
                "pages": page["pages"],
                "first": f"{first + 1:,}",
                "last": f"{first + len(page['meetings']):,}",
                "previous_url": page_url(page["page"] - 1) if page["page"] > 1 else None,
                "next_url": page_url(page["page"] + 1) if page["page"] < page["pages"] else None,
                "filtered": bool(filter_text),
                "problems": problems,
            },
            "filters": filter_text,
            "states": [
                ("not_queued", "Not queued"),
                ("waiting", "Waiting"),
                ("transferring", "Transferring"),
                ("transferred", "Transferred"),
                ("failed", "Failed"),
            ],
            "teams": selectors.meeting_teams(user=request.user),
            "fathom": fathom,
            "webhook": (
                accounts.fathom_webhook_settings(
                    user=request.user, absolute_uri=request.build_absolute_uri
                )
                if fathom["connected"]
                else None
            ),
            "snapshot": page["snapshot"],
            "pause_note": estimates.current_pause_note(),
            "activity": history.recent_activity(user=request.user),
            "latest_entries": {
                str(row["meeting"].pk): row["entry"] for row in page["meetings"] if row["entry"]
            },
            "config": {
                **_client_config(request),
                # "Queue all matching" sends the filters the page was drawn with.
                "filters": filter_text,
                "matching_count": page["count"],
                "page_size": MEETINGS_PAGE_SIZE,
                "max_bulk": MAX_BULK,
            },
        },
    )


@login_required
@require_safe
def queue(request: HttpRequest) -> HttpResponse:
    """The whole line, live: mine in full, everyone else's as anonymous places."""
    return render(
        request,
        "queue_app/queue.html",
        {
            "nav": "queue",
            "snapshot": selectors.queue_snapshot_for(request.user),
            "activity": history.recent_activity(user=request.user, kinds=history.DONE_KINDS),
            "pause_note": estimates.current_pause_note(),
            "config": _client_config(request),
        },
    )


def _staff_only(request: HttpRequest) -> None:
    # Signed in but not staff: 403, not a redirect to a login page that would loop.
    if not request.user.is_staff:
        raise PermissionDenied("Staff only.")


def _monitor_data(window: str = "hour") -> dict[str, Any]:
    since = timezone.now() - MONITOR_WINDOW
    return {
        "stats": selectors.queue_stats_since(since=since),
        "failures": [_failure(attempt) for attempt in selectors.recent_failures(since=since)],
        "chart": stats.activity(window=window),
        "error_kinds": stats.error_kinds(),
    }


def _failure(attempt: TransferAttempt) -> dict[str, Any]:
    entry = attempt.entry
    return {
        "id": str(entry.id),
        "title": str(entry.meeting),
        "owner": entry.owner.get_username(),
        "error": attempt.error,
        "error_kind": attempt.error_kind,
        "attempts": attempt.number,
        "finished_at": attempt.finished_at.isoformat() if attempt.finished_at else None,
        "admin_url": reverse("admin:queue_app_queueentry_change", args=[entry.pk]),
    }


@login_required
@require_safe
def monitor(request: HttpRequest) -> HttpResponse:
    """Staff: the full queue live, running transfers, failures, throughput, the pause switch."""
    _staff_only(request)
    return render(
        request,
        "queue_app/monitor.html",
        {
            "nav": "monitor",
            "snapshot": selectors.queue_snapshot_for(request.user),
            "pause_note": estimates.current_pause_note(),
            "monitor": _monitor_data(),
            "config": {
                **_client_config(request),
                # The script puts each entry's id in place of the zeros.
                "admin_entry_url": reverse("admin:queue_app_queueentry_change", args=[ZERO_ID]),
                "stats_url": reverse("monitor-stats"),
                "entries_url": reverse("monitor-entries"),
                "page_size": MONITOR_PAGE_SIZE,
            },
        },
    )


def _bad_request(detail: str) -> JsonResponse:
    # The API's error shape (queue_app/api/errors.py), for the monitor's script.
    return JsonResponse({"code": "invalid", "detail": detail}, status=400)


@login_required
@require_safe
def monitor_stats(request: HttpRequest) -> JsonResponse:
    """The monitor's numbers and charts (`?window=hour` or `day`), fetched again after
    transfers end."""
    _staff_only(request)
    window = request.GET.get("window", "hour")
    if window not in stats.WINDOWS:
        return _bad_request(f"window must be one of: {', '.join(stats.WINDOWS)}.")
    return JsonResponse(_monitor_data(window))


def _page_params(request: HttpRequest) -> tuple[int, int] | None:
    """?offset= and ?limit= (1 to MONITOR_MAX_PAGE_SIZE), or None if malformed."""
    offset, limit = request.GET.get("offset", "0"), request.GET.get("limit", str(MONITOR_PAGE_SIZE))
    if not (offset.isascii() and offset.isdigit() and limit.isascii() and limit.isdigit()):
        return None
    if len(offset) > 9 or not 1 <= int(limit) <= MONITOR_MAX_PAGE_SIZE:
        return None
    return int(offset), int(limit)


@login_required
@require_safe
def monitor_entries(request: HttpRequest) -> JsonResponse:
    """Failed entries for the monitor's filter: `?owner=` (a username), `?error_kind=`
    (of the last attempt), a page by `?offset=` and `?limit=`; with the total matching."""
    _staff_only(request)
    page = _page_params(request)
    if page is None:
        return _bad_request(f"offset is a whole number; limit from 1 to {MONITOR_MAX_PAGE_SIZE}.")
    owner = request.GET.get("owner") or None
    error_kind = request.GET.get("error_kind") or None
    total, entries = selectors.failed_entries_page(
        owner=owner, error_kind=error_kind, offset=page[0], limit=page[1]
    )
    return JsonResponse(
        {"total": total, "offset": page[0], "entries": [_failed_row(e) for e in entries]}
    )


def _failed_row(entry: Any) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "title": str(entry.meeting),
        "owner": entry.owner.get_username(),
        "error": entry.last_error,
        "error_kind": entry.last_error_kind or "",
        "attempts": entry.attempts,
        "finished_at": entry.finished_at.isoformat() if entry.finished_at else None,
    }


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' scrape: staff signed in, or `Authorization: Bearer <METRICS_TOKEN>`."""
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    by_token = bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    if not by_token:
        if not request.user.is_authenticated:
            response = HttpResponse("Sign in as staff or send the metrics token.", status=401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        _staff_only(request)
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)
