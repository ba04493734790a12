"""API tokens: obtaining one with a username and password, and revoking it.

DRF keeps one token per user and looks it up on every request, so a deleted token
stops working at once; its post_delete signal also closes the sockets it opened.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from rest_framework.authtoken.models import Token

from queue_app.errors import InvalidCredentials


def token_obtain(*, request: Any, username: str, password: str) -> Token:
    """The user's token (made on first use). Raises InvalidCredentials on a bad login."""
    # authenticate() refuses inactive users too, with the same None.
    user = authenticate(request=request, username=username, password=password)
    if user is None:
        raise InvalidCredentials()
    token, _ = Token.objects.get_or_create(user=user)
    return token


def token_revoke(*, user: Any) -> int:
    """Delete the user's token. Returns how many were deleted (0 or 1)."""
    # A queryset delete still sends post_delete per row, which closes the token's sockets.
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted
