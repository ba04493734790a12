"""API views: parse with an input serializer, call a service or selector, render.

Someone else's entry or meeting is answered exactly like one that does not exist (404).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.utils.http import urlencode
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import AllowAny, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from queue_app import estimates, history, selectors
from queue_app.api import serializers as s
from queue_app.api.tokens import token_obtain, token_revoke
from queue_app.models import QueueEntry
from queue_app.services import line, sharing

UNAVAILABLE = "`unavailable`: the database or Redis cannot be reached; try again shortly."
ERRORS = {
    400: OpenApiResponse(s.ErrorSerializer, description="Bad input (`invalid`, ...)."),
    401: OpenApiResponse(s.ErrorSerializer, description="Not signed in."),
    403: OpenApiResponse(s.ErrorSerializer, description="Staff only."),
    404: OpenApiResponse(s.ErrorSerializer, description="No such entry, or not yours."),
    409: OpenApiResponse(s.ErrorSerializer, description="`already_queued` or `invalid_state`."),
    413: OpenApiResponse(
        s.ErrorSerializer, description="`too_large`: too large a body, or too many form fields."
    ),
    415: OpenApiResponse(
        s.ErrorSerializer,
        description="`unsupported_media_type`: a body that is not JSON or a form, or of no type.",
    ),
    429: OpenApiResponse(s.ErrorSerializer, description="`throttled`: see `Retry-After`."),
    503: OpenApiResponse(s.ErrorSerializer, description=UNAVAILABLE),
}
ENTRY_ID = OpenApiParameter("entry_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The schema's error responses for `statuses`, and always 503: every request needs the
    database (and most Redis), so any may be answered `unavailable`."""
    return {code: ERRORS[code] for code in (*statuses, 503)}


class ApiView(APIView):
    """Base of the API's views: 401 (not 403) when not signed in.

    Errors get the API's one shape from REST_FRAMEWORK["EXCEPTION_HANDLER"]
    (queue_app/api/errors.py), as every DRF view does; no view overrides it.
    """

    # DRF answers 401 only if the first authenticator names a WWW-Authenticate scheme;
    # session auth has none, so with it first an anonymous caller would get 403.
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]


def entry_or_404(request: Request, entry_id: str) -> QueueEntry:
    entry = selectors.entry_visible_to(user=request.user, entry_id=entry_id)
    if entry is None:
        raise NotFound()
    return entry


def entry_response(request: Request, entry: QueueEntry, code: int = status.HTTP_200_OK) -> Response:
    return Response(selectors.entry_detail_for(user=request.user, entry=entry), status=code)


# --- auth ---------------------------------------------------------------------------------


class TokenObtainThrottle(SimpleRateThrottle):
    """10 attempts a minute per client address: slows password guessing to a crawl."""

    scope = "auth_token"
    rate = "10/min"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class TokenObtainUsernameThrottle(TokenObtainThrottle):
    """10 attempts a minute per username, whatever the address.

    The address comes from X-Forwarded-For when the request has one (DRF's NUM_PROXIES
    is unset), which a client can vary at will; the username it attacks it cannot.
    """

    scope = "auth_token_user"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        username = request.data.get("username") if hasattr(request.data, "get") else None
        if not isinstance(username, str) or not username:
            return None  # the serializer refuses it; nothing to guess with
        # Hashed: a username may hold characters a cache key must not.
        ident = hashlib.sha256(username.lower().encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


class TokenView(ApiView):
    """POST obtains the caller's API token; DELETE revokes it."""

    def _obtaining(self) -> bool:
        # request is None while drf-spectacular inspects the view for the schema.
        return getattr(self.request, "method", None) == "POST"

    def get_authenticators(self) -> list[Any]:
        # Obtaining needs only the body's credentials: a stale token header must not
        # turn a valid login into a 401.
        return [] if self._obtaining() else super().get_authenticators()

    def get_permissions(self) -> list[Any]:
        return [AllowAny()] if self._obtaining() else super().get_permissions()

    def get_throttles(self) -> list[Any]:
        if self._obtaining():
            return [TokenObtainThrottle(), TokenObtainUsernameThrottle()]
        return super().get_throttles()

    @extend_schema(
        operation_id="auth_token_obtain",
        request=s.TokenObtainInputSerializer,
        responses={200: s.TokenSerializer, **errors(400, 413, 415, 429)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = s.TokenObtainInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token = token_obtain(request=request, **data.validated_data)
        return Response({"token": token.key}, headers={"Cache-Control": "no-store"})

    @extend_schema(operation_id="auth_token_revoke", responses={204: None, **errors(401)})
    def delete(self, request: Request) -> Response:
        token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- the queue ----------------------------------------------------------------------------


class QueueView(ApiView):
    @extend_schema(
        operation_id="queue_snapshot",
        responses={200: s.QUEUE_SNAPSHOT_SCHEMA, **errors(401)},
        description=(
            "Your window on the queue (docs/protocol.md, version 2); others' entries carry"
            " only id, position and status. Past the window: GET /api/queue/line."
        ),
    )
    def get(self, request: Request) -> Response:
        return Response(selectors.queue_snapshot_for(request.user))

    @extend_schema(
        operation_id="queue_enqueue",
        request=s.EnqueueInputSerializer,
        responses={
            201: OpenApiResponse(
                {"oneOf": [s.ENTRY_SCHEMA, s.bulk_result_schema("meeting_id")]},
                description=(
                    "`meeting_id`: the new entry. `meeting_ids` or `matching`: the entries"
                    " created and, per meeting not queued, why."
                ),
            ),
            200: OpenApiResponse(
                s.bulk_result_schema("meeting_id"),
                description="`meeting_ids` or `matching`, none queued: why, per meeting.",
            ),
            **errors(400, 401, 404, 409, 413, 415),
        },
        description=(
            "Put one of your meetings (`meeting_id`) in the line (its place by fair share,"
            " or at the back with QUEUE_ORDERING=fifo), or up to 5,000"
            " (`meeting_ids`, in that order) in one change and one event, or every one of"
            " yours `matching` the filters of GET /api/meetings (newest first; more than"
            " 5,000 matching is refused, `invalid`)."
        ),
    )
    def post(self, request: Request) -> Response:
        data = s.EnqueueInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if "meeting_ids" in data.validated_data:
            result = line.entries_enqueue(
                owner=request.user, meeting_ids=data.validated_data["meeting_ids"]
            )
            return bulk_response(request, result, "meeting_id", created=True)
        if "matching" in data.validated_data:
            result = line.entries_enqueue_matching(
                owner=request.user, filters=dict(data.validated_data["matching"]), limit=s.MAX_BULK
            )
            return bulk_response(request, result, "meeting_id", created=True)
        meeting = selectors.meeting_of(
            user=request.user, meeting_id=data.validated_data["meeting_id"]
        )
        if meeting is None:
            raise NotFound()
        entry = line.entry_enqueue(meeting=meeting)
        return entry_response(request, entry, status.HTTP_201_CREATED)


def bulk_response(
    request: Request, result: line.BulkChange, id_name: str, *, created: bool = False
) -> Response:
    """The entries a bulk change made (as the caller sees them) and what it refused."""
    body = {
        "entries": selectors.entries_detail_for(user=request.user, entries=result.entries),
        "refused": [
            {id_name: refusal.id, "code": refusal.code, "detail": refusal.detail}
            for refusal in result.refused
        ],
    }
    code = status.HTTP_201_CREATED if created and result.entries else status.HTTP_200_OK
    return Response(body, status=code)


class BulkEntriesView(ApiView):
    """POST {"entry_ids": [...]} or {"matching": {...}}: one service call for all of them,
    one event."""

    service: Any = None

    def post(self, request: Request) -> Response:
        data = s.EntryIdsInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        owner = None if request.user.is_staff else request.user
        if "matching" in data.validated_data:
            matching = dict(data.validated_data["matching"])
            if owner is not None:  # users act on their own entries only
                matching["owner"] = request.user.get_username()
            entry_ids = [str(pk) for pk in self.matching(**matching)[: s.MAX_BULK]]
        else:
            entry_ids = data.validated_data["entry_ids"]
        result = type(self).service(
            entry_ids=entry_ids, owner=owner, actor=request.user, **self.extra(data)
        )
        return bulk_response(request, result, "entry_id")

    def extra(self, data: Any) -> dict[str, Any]:
        """What else this change takes from the body (a cancel's note)."""
        return {}

    def matching(self, **filters: str) -> Any:
        """The ids of the entries that `filters` select for this change."""
        raise NotImplementedError


BULK_RESPONSES = {
    200: OpenApiResponse(s.bulk_result_schema("entry_id")),
    **errors(400, 401, 413, 415),
}


@extend_schema_view(
    post=extend_schema(
        operation_id="queue_entries_cancel",
        request=s.EntryIdsInputSerializer,
        responses=BULK_RESPONSES,
        description=(
            "Cancel several entries (yours; staff: anyone's) in one change and one event:"
            " by id, or every waiting one `matching` an owner. Each one not cancelled is"
            " listed with why (`not_found`, `invalid_state`)."
        ),
    )
)
class QueueCancelView(BulkEntriesView):
    service = staticmethod(line.entries_cancel)

    def extra(self, data: Any) -> dict[str, Any]:
        return {"note": data.validated_data.get("note", "")}

    def matching(self, *, owner: str | None = None, error_kind: str | None = None) -> Any:
        if error_kind is not None:
            raise ValidationError({"matching": ["error_kind selects entries to retry only."]})
        return selectors.waiting_entries(owner=owner).values_list("pk", flat=True)


@extend_schema_view(
    post=extend_schema(
        operation_id="queue_entries_retry",
        request=s.EntryIdsInputSerializer,
        responses=BULK_RESPONSES,
        description=(
            "Put several failed or cancelled entries (yours; staff: anyone's) back at the end"
            " of the line, in the order given, in one change and one event: by id, or every"
            " failed one `matching` an owner and the error kind of its last attempt."
        ),
    )
)
class QueueRetryView(BulkEntriesView):
    service = staticmethod(line.entries_retry)

    def matching(self, *, owner: str | None = None, error_kind: str | None = None) -> Any:
        return selectors.failed_entries(owner=owner, error_kind=error_kind).values_list(
            "pk", flat=True
        )


class EntryView(ApiView):
    @extend_schema(
        operation_id="queue_entry_detail",
        parameters=[ENTRY_ID],
        responses={200: s.ENTRY_DETAIL_SCHEMA, **errors(401, 404)},
        description=(
            "An entry (its owner or staff) with every attempt at its transfer, oldest first:"
            " a retry never erases an earlier failure."
        ),
    )
    def get(self, request: Request, entry_id: str) -> Response:
        entry = entry_or_404(request, entry_id)
        detail = selectors.entry_detail_for(user=request.user, entry=entry)
        return Response({**detail, "attempt_history": selectors.attempts_of(entry)})

    @extend_schema(
        operation_id="queue_entry_cancel",
        parameters=[ENTRY_ID],
        request=s.NoteInputSerializer,
        responses={200: s.ENTRY_SCHEMA, **errors(400, 401, 404, 409, 413, 415)},
        description=(
            "Cancel an entry (its owner or staff). Staff may send a `note` for the owner."
        ),
    )
    def delete(self, request: Request, entry_id: str) -> Response:
        entry = entry_or_404(request, entry_id)
        data = s.NoteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        cancelled = line.entry_cancel(
            entry_id=entry.pk, note=data.validated_data.get("note", ""), actor=request.user
        )
        return entry_response(request, cancelled)


class EntryRetryView(ApiView):
    @extend_schema(
        operation_id="queue_entry_retry",
        parameters=[ENTRY_ID],
        request=None,
        responses={200: s.ENTRY_SCHEMA, **errors(401, 404, 409)},
        description="Put a failed or cancelled entry back at the end of the line.",
    )
    def post(self, request: Request, entry_id: str) -> Response:
        entry = entry_or_404(request, entry_id)
        return entry_response(request, line.entry_retry(entry_id=entry.pk, actor=request.user))


class EntryMoveView(ApiView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="queue_entry_move",
        parameters=[ENTRY_ID],
        request=s.MoveInputSerializer,
        responses={200: s.ENTRY_SCHEMA, **errors(400, 401, 403, 404, 409, 413, 415)},
        description="Move a queued entry (staff only). Position 1 is the front.",
    )
    def post(self, request: Request, entry_id: str) -> Response:
        entry = entry_or_404(request, entry_id)
        data = s.MoveInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        moved = line.entry_move(
            entry_id=entry.pk,
            position=data.validated_data["position"],
            note=data.validated_data.get("note", ""),
            actor=request.user,
        )
        return entry_response(request, moved)


class QueueClearView(ApiView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="queue_clear",
        request=s.NoteInputSerializer,
        responses={200: s.ClearResultSerializer, **errors(400, 401, 403, 413, 415)},
        description=(
            "Cancel every waiting entry (staff only); running transfers go on. A `note`"
            " reaches every owner whose entries it cancels."
        ),
    )
    def post(self, request: Request) -> Response:
        data = s.NoteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        cleared = line.queue_clear(note=data.validated_data.get("note", ""), actor=request.user)
        return Response({"cancelled": cleared})


class QueuePauseView(ApiView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="queue_pause",
        request=s.NoteInputSerializer,
        responses={200: s.PauseResultSerializer, **errors(400, 401, 403, 413, 415)},
        description=(
            "Stop handing out work (staff only); running transfers finish. A `note` says"
            " why to everyone waiting, until the queue resumes."
        ),
    )
    def post(self, request: Request) -> Response:
        data = s.NoteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changed = line.queue_pause(note=data.validated_data.get("note", ""))
        return Response({"paused": True, "changed": changed})


class QueueResumeView(ApiView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="queue_resume",
        request=None,
        responses={200: s.PauseResultSerializer, **errors(401, 403)},
        description="Start handing out work again (staff only).",
    )
    def post(self, request: Request) -> Response:
        return Response({"paused": False, "changed": line.queue_resume()})


# --- meetings and events ------------------------------------------------------------------


class MeetingPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 500


class MeetingsView(ApiView):
    @extend_schema(
        operation_id="meetings_list",
        parameters=[
            s.MeetingsQuerySerializer,
            OpenApiParameter("limit", int, description="Page size (default 100, max 500)."),
            OpenApiParameter("offset", int),
        ],
        responses={200: s.MeetingPageSerializer, **errors(400, 401)},
        description=(
            "Your meetings, newest first, each with its active queue entry and its state;"
            " searched by title, filtered by state and the day recorded, in pages."
        ),
    )
    def get(self, request: Request) -> Response:
        query = s.MeetingsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        paginator = MeetingPagination()
        page = paginator.paginate_queryset(
            selectors.meetings_of(user=request.user, **query.validated_data), request, view=self
        )
        return paginator.get_paginated_response(s.MeetingSerializer(page, many=True).data)


class QueueLineView(ApiView):
    @extend_schema(
        operation_id="queue_line",
        parameters=[s.LineQuerySerializer],
        responses={
            200: {
                "type": "object",
                "required": ["seq", "waiting", "start", "results", "next"],
                "properties": {
                    "seq": {"type": "integer"},
                    "waiting": {"type": "integer"},
                    "start": {"type": "integer"},
                    "results": {"type": "array", "items": s.ENTRY_SCHEMA},
                    "next": {"type": ["string", "null"]},
                },
            },
            **errors(400, 401),
        },
        description=(
            "The line from place `start` on (`limit` places), redacted for you, as of event"
            " `seq`: past the head of the line a socket's window holds."
        ),
    )
    def get(self, request: Request) -> Response:
        query = s.LineQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        start, limit = query.validated_data["start"], query.validated_data["limit"]
        page = selectors.line_page(user=request.user, start=start, limit=limit)
        after = start + len(page["results"])
        page["next"] = (
            request.build_absolute_uri(
                f"{request.path}?{urlencode({'start': after, 'limit': limit})}"
            )
            if after <= page["waiting"] and page["results"]
            else None
        )
        return Response(page)


class EventsView(ApiView):
    @extend_schema(
        operation_id="events_list",
        parameters=[s.EventsQuerySerializer],
        responses={200: s.EVENTS_PAGE_SCHEMA, **errors(400, 401)},
        description=(
            "Queue events with seq > `after`, oldest first, redacted for you. Every seq is "
            "listed, so a jump between `after` and the first one means events were pruned: "
            "start again from GET /api/queue."
        ),
    )
    def get(self, request: Request) -> Response:
        query = s.EventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        # One more than asked tells whether another page follows.
        events = selectors.events_for(user=request.user, after=after, limit=limit + 1)
        more, events = len(events) > limit, events[:limit]
        next_after = events[-1]["seq"] if events else after
        next_url = None
        if more:
            next_url = request.build_absolute_uri(
                f"{request.path}?{urlencode({'after': next_after, 'limit': limit})}"
            )
        return Response({"results": events, "after": next_after, "next": next_url})


# --- the history of one's entries ---------------------------------------------------------


class ActivityPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 200


class ActivityView(ApiView):
    @extend_schema(
        operation_id="activity_list",
        parameters=[
            s.ActivityQuerySerializer,
            OpenApiParameter("limit", int, description="Page size (default 50, max 200)."),
            OpenApiParameter("offset", int),
        ],
        responses={200: s.ACTIVITY_PAGE_SCHEMA, **errors(400, 401)},
        description=(
            "What happened to your entries, newest first: transferred (with the link),"
            " failed (with the reason), cancelled, moved or put back in line (by whom, with"
            " staff's note). Staff see their own, or one user's with `user`."
        ),
    )
    def get(self, request: Request) -> Response:
        query = s.ActivityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        paginator = ActivityPagination()
        rows = history.activity_for(user=request.user, username=query.validated_data.get("user"))
        page = paginator.paginate_queryset(rows, request, view=self)
        staff = bool(request.user.is_staff)
        return paginator.get_paginated_response(
            [history.activity_item(row, staff=staff) for row in page]
        )


# --- waiting times ------------------------------------------------------------------------


class EstimatesView(ApiView):
    @extend_schema(
        operation_id="queue_estimates",
        responses={200: s.ESTIMATES_SCHEMA, **errors(401)},
        description=(
            "When each of your active entries should start and be done, in seconds from"
            " `computed_at`, from recent transfer times, the slots and the line ahead"
            " (docs/estimates.md). None while the queue is paused (running transfers"
            " excepted) or before any transfer has completed: `reason` says which."
        ),
    )
    def get(self, request: Request) -> Response:
        return Response(estimates.estimates_for(user=request.user))


# --- who may open a share page -----------------------------------------------------------


class MeetingShareView(ApiView):
    @extend_schema(
        operation_id="meeting_share_access",
        parameters=[OpenApiParameter("meeting_id", int, OpenApiParameter.PATH)],
        request=s.ShareAccessSerializer,
        responses={200: s.ShareAccessSerializer, **errors(400, 401, 404, 413, 415)},
        description=(
            "Who may open your meeting's share page and file: `anyone` with the link (the"
            " default) or `signed_in` users only."
        ),
    )
    def put(self, request: Request, meeting_id: int) -> Response:
        meeting = selectors.meeting_of(user=request.user, meeting_id=meeting_id)
        if meeting is None:
            raise NotFound()
        data = s.ShareAccessSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        meeting = sharing.meeting_set_share_access(
            meeting=meeting, access=data.validated_data["access"]
        )
        return Response({"access": meeting.share_access})
