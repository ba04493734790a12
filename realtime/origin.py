"""Which pages may open a socket: the Origin check at the WebSocket handshake.

A browser sends this server's cookies with a WebSocket handshake whichever page opened
it, and the same-origin policy does not apply to WebSockets: the Origin header is the
only sign of which page that was. So, as Django's CSRF check does for forms, the Origin must
be this server's own origin (scheme, host and port, from the request's Host header and
scheme, the host in ALLOWED_HOSTS) or one of CSRF_TRUSTED_ORIGINS (the public origin
behind a proxy). Comparing the host alone, as Channels' AllowedHostsOriginValidator
does, let in a page from any port or scheme on an allowed host (another app's page on
127.0.0.1:9999, say).

A handshake without an Origin is not from a browser page (browsers always send one). It
may authenticate with `?token=` only: the session cookie is never honoured without an
Origin of ours, as a cookie is the credential a foreign page could make ride along.

A refused handshake is closed before it is accepted: daphne answers HTTP 403.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import is_same_domain, validate_host

from realtime.auth import query_params

DEFAULT_PORTS = {"http": 80, "https": 443}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _origin_tuple(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the default port filled in; None if it does not parse."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number, or out of range
        return None
    if not parts.hostname or port is None or parts.username is not None:
        return None
    return scheme, parts.hostname, port


def _is_secure(scope: dict[str, Any]) -> bool:
    """Whether the client reached us over TLS: the scope's scheme, or the proxy's header
    named by SECURE_PROXY_SSL_HEADER, as Django's request.is_secure() decides."""
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        header = name.removeprefix("HTTP_").lower().replace("_", "-").encode()
        value = _header(scope, header)
        return value is not None and value.split(",", 1)[0].strip() == secure_value
    return False


def server_origin(scope: dict[str, Any]) -> tuple[str, str, int] | None:
    """This server's origin as the client addressed it, if the host is one we serve."""
    host = None
    if settings.USE_X_FORWARDED_HOST:
        host = _header(scope, b"x-forwarded-host")
    host = host or _header(scope, b"host")
    if not host:
        return None
    own = _origin_tuple("https" if _is_secure(scope) else "http", host.strip())
    if own is None:
        return None
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:  # as Django's request.get_host()
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    hostname = f"[{own[1]}]" if ":" in own[1] else own[1]
    return own if validate_host(hostname, allowed) else None


def _trusted(origin: str) -> bool:
    """CSRF_TRUSTED_ORIGINS, read as Django's CSRF check reads it: exact origins, and
    `scheme://*.domain` for the domain's subdomains."""
    parts = urlsplit(origin)
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if "*" not in trusted:
            if trusted == origin:
                return True
            continue
        pattern = urlsplit(trusted)
        if parts.scheme == pattern.scheme and is_same_domain(
            parts.netloc, pattern.netloc.lstrip("*")
        ):
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether the handshake in `scope` may go on (see the module's docstring)."""
    origin = _header(scope, b"origin")
    if origin is None:
        return "token" in query_params(scope)
    try:
        if _trusted(origin):
            return True
        parts = urlsplit(origin)
    except ValueError:  # urlsplit refuses some, e.g. "http://[::1"
        return False
    if parts.scheme not in DEFAULT_PORTS or parts.path or parts.query or parts.fragment:
        return False  # "null", file://, or not an origin at all
    claimed = _origin_tuple(parts.scheme, parts.netloc)
    return claimed is not None and claimed == server_origin(scope)


class OriginGuard:
    """ASGI middleware for the WebSocket routes: refuse handshakes from foreign pages."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)
