"""Socket authentication by query string, inside Channels' session AuthMiddlewareStack.

`?token=` holds a one-time socket ticket or an API token; it replaces the session user.
The credential's fingerprint stays in the scope so that revoking it (logout, token
deletion) can close exactly the sockets it opened.

A credential of the wrong shape (a NUL, non-ASCII, too long) is no credential: it is
never looked up, so it cannot reach Redis or the database (PostgreSQL refuses a NUL in a
string parameter, which was an HTTP 500 at the handshake). The socket is then closed
with 4401 like any unknown credential.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddleware, get_user
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from realtime.batching import batcher
from realtime.tickets import TICKET_LENGTH, aredeem_ticket, fingerprint

logger = logging.getLogger(__name__)

# A part the socket needs that cannot be reached: the socket is closed with 1013 (try again
# later) and the client reconnects with its backoff.
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)

# Tickets are secrets.token_urlsafe(32) (43 characters), API tokens 40 hex digits.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,200}")
# Session keys are short strings of printable ASCII in every Django session engine
# (the database's are 32 letters and digits; signed cookies' stay well under 4 KB).
_SESSION_KEY_SHAPE = re.compile(r"[!-~]{1,4096}")


# Where query_params() keeps what it parsed, in the socket's scope (the middleware copies
# the scope with this key in it, so each socket's query string is parsed once, not by each
# of TokenOrSession, QueryTokenAuthMiddleware and the consumer: ~2% of daphne's samples
# while 1,000 sockets connect).
_PARSED_KEY = "fathomloom.query_params"


def query_params(scope: dict[str, Any]) -> dict[str, str]:
    """The socket's query string's parameters (the last of each name). Do not change the
    dict: it is the scope's."""
    parsed = scope.get(_PARSED_KEY)
    if parsed is None or parsed[0] is not scope.get("query_string"):
        raw = scope.get("query_string", b"")
        params = {key: values[-1] for key, values in parse_qs(raw.decode("latin-1")).items()}
        parsed = scope[_PARSED_KEY] = (raw, params)
    return parsed[1]


def _users_by_id(user_ids: dict[Any, Any]) -> dict[Any, Any]:
    """Active users by id, in one query (the database thread)."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(pk__in=list(user_ids), is_active=True)
    return {user.pk: user for user in users}


def _users_by_api_token(keys: dict[str, Any]) -> dict[str, Any]:
    """The active users of these API tokens, in one query (the database thread): users
    with their token's key alongside, one model instance each rather than two."""
    from django.contrib.auth import get_user_model
    from django.db.models import F

    users = (
        get_user_model()
        .objects.filter(auth_token__key__in=list(keys), is_active=True)
        .annotate(token_key=F("auth_token__key"))
    )
    return {user.token_key: user for user in users}


def _session_users(scopes: dict[int, dict[str, Any]]) -> dict[int, Any]:
    """Channels' get_user for each scope, in one trip to the database thread."""
    return {key: get_user.func(scope) for key, scope in scopes.items()}


async def _user_by_id(user_id: int):
    user = await batcher("users-by-id", _users_by_id).get(user_id)
    return user or AnonymousUser()


async def _user_by_api_token(key: str):
    user = await batcher("users-by-token", _users_by_api_token).get(key)
    return user or AnonymousUser()


async def _authenticate_token(token: str) -> tuple[Any, str | None]:
    """The user a `?token=` names (a one-time ticket first, then an API token) and the
    credential's fingerprint; AnonymousUser if it names none.

    Only a token of a ticket's length (tickets.TICKET_LENGTH) can be a ticket: any other
    goes straight to the API tokens, with no trip to Redis (its pipeline was ~8% of
    daphne's samples while 1,000 sockets with API tokens connected, bench/notes.md), and
    an API-token socket opens while Redis is down."""
    if len(token) == TICKET_LENGTH:
        ticket = await aredeem_ticket(token)
        if ticket is not None:
            return await _user_by_id(ticket["user_id"]), ticket.get("credential")
    user = await _user_by_api_token(token) if len(token) <= 64 else AnonymousUser()
    return user, fingerprint(token)


class SessionAuthMiddleware(AuthMiddleware):
    """Channels' AuthMiddleware (the session's user), but a database or Redis that is down
    marks the socket unavailable (closed with 1013 by the consumer) instead of failing the
    handshake with HTTP 500."""

    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        session = scope.get("session")
        if "token" in query_params(scope) or getattr(session, "session_key", None) is None:
            # `?token=` replaces the session's user (QueryTokenAuthMiddleware), and with no
            # session cookie there is no user to read: no trip to the database thread.
            scope["user"]._wrapped = AnonymousUser()
            return
        try:
            # Channels' get_user, with the sockets connecting together in one trip.
            scope["user"]._wrapped = await batcher("session-users", _session_users).get(
                id(scope), scope
            )
        except UNAVAILABLE_ERRORS as exc:
            logger.warning("socket session unavailable: %s", type(exc).__name__)
            scope["user"]._wrapped = AnonymousUser()
            scope["unavailable"] = True


class QueryTokenAuthMiddleware:
    """Authenticate `?token=` (ticket first, then API token); else keep the session user."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        params = query_params(scope)
        token = params.get("token")
        if token is not None and not _TOKEN_SHAPE.fullmatch(token):
            scope = {**scope, "user": AnonymousUser(), "credential": None}
        elif token is not None:
            try:
                user, credential = await _authenticate_token(token)
            except UNAVAILABLE_ERRORS as exc:
                # Redis (tickets) or the database (users, tokens) is down: the consumer
                # closes with 1013, try again later, rather than daphne answering HTTP 500.
                logger.warning("socket authentication unavailable: %s", type(exc).__name__)
                scope = {**scope, "user": AnonymousUser(), "credential": None, "unavailable": True}
            else:
                scope = {**scope, "user": user, "credential": credential}
        else:
            session = scope.get("session")
            key = getattr(session, "session_key", None)
            scope = {**scope, "credential": fingerprint(key) if key else None}
        return await self.app(scope, receive, send)


class TokenOrSession:
    """Sockets with `?token=` skip the cookie and session layers (a third of the
    middleware's time at connect: parsing cookies, Channels' session wrapper and its
    send, the user's lazy object); the token replaces the session's user anyway
    (QueryTokenAuthMiddleware). Every other socket goes through the session stack."""

    def __init__(self, *, token_app: Any, session_app: Any) -> None:
        self.token_app = token_app
        self.session_app = session_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if b"token" in scope.get("query_string", b"") and "token" in query_params(scope):
            return await self.token_app(scope, receive, send)
        return await self.session_app(scope, receive, send)


class SessionCookieGuard:
    """Forget a session cookie of the wrong shape before the session is looked up.

    Sits between Channels' CookieMiddleware (which parses scope["cookies"]) and its
    SessionMiddleware: the socket is then anonymous, as with no cookie at all.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        cookies = scope.get("cookies") or {}
        key = cookies.get(settings.SESSION_COOKIE_NAME)
        if key is not None and not _SESSION_KEY_SHAPE.fullmatch(key):
            cookies = {k: v for k, v in cookies.items() if k != settings.SESSION_COOKIE_NAME}
            scope = {**scope, "cookies": cookies}
        return await self.app(scope, receive, send)
