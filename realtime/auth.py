"""Socket authentication by query string, inside Channels' session AuthMiddlewareStack.

`?token=` holds a one-time socket ticket or an API token; it replaces the session user.
The credential's fingerprint stays in the scope so that revoking it (logout, token
deletion) can close exactly the sockets it opened.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from realtime.tickets import aredeem_ticket, fingerprint


def query_params(scope: dict[str, Any]) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {key: values[-1] for key, values in parse_qs(raw).items()}


@database_sync_to_async
def _user_by_id(user_id: int):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    return user or AnonymousUser()


@database_sync_to_async
def _user_by_api_token(key: str):
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class QueryTokenAuthMiddleware:
    """Authenticate `?token=` (ticket first, then API token); else keep the session user."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        params = query_params(scope)
        token = params.get("token")
        if token is not None:
            ticket = await aredeem_ticket(token)
            if ticket is not None:
                user = await _user_by_id(ticket["user_id"])
                credential = ticket.get("credential")
            else:
                user = await _user_by_api_token(token) if len(token) <= 64 else AnonymousUser()
                credential = fingerprint(token)
            scope = {**scope, "user": user, "credential": credential}
        else:
            session = scope.get("session")
            key = getattr(session, "session_key", None)
            scope = {**scope, "credential": fingerprint(key) if key else None}
        return await self.app(scope, receive, send)
