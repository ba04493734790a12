"""HTTP side of live updates: one-time socket tickets."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.tickets import TICKET_TTL_SECONDS, fingerprint, issue_ticket

# The API's one error shape, by reference: realtime may not import queue_app's serializer
# (docs/architecture.md), and the API's other operations put it in the document.
ERROR = {"$ref": "#/components/schemas/Error"}
UNAVAILABLE = "`unavailable`: Redis (where tickets live) or the database cannot be reached."


class SocketTicketView(APIView):
    """POST /api/ws-ticket: a credential for one socket connection within 60 seconds."""

    @extend_schema(
        request=None,
        responses={
            201: inline_serializer(
                "SocketTicket",
                {"ticket": serializers.CharField(), "expires_in": serializers.IntegerField()},
            ),
            401: OpenApiResponse(ERROR, description="Not signed in."),
            503: OpenApiResponse(ERROR, description=UNAVAILABLE),
        },
    )
    def post(self, request: Request) -> Response:
        token = getattr(request.auth, "key", None)
        session_key = request.session.session_key if hasattr(request, "session") else None
        secret = token or session_key
        ticket = issue_ticket(
            user_id=request.user.pk, credential=fingerprint(secret) if secret else None
        )
        return Response(
            {"ticket": ticket, "expires_in": TICKET_TTL_SECONDS},
            status=201,
            headers={"Cache-Control": "no-store"},
        )
