"""ASGI entry point: HTTP goes to Django, WebSockets to the realtime consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fathomloom.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware, SessionMiddleware  # noqa: E402
from django.conf import settings  # noqa: E402

from realtime.auth import (  # noqa: E402
    QueryTokenAuthMiddleware,
    SessionAuthMiddleware,
    SessionCookieGuard,
)
from realtime.origin import OriginGuard  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

http_app = django_asgi_app
if settings.DEBUG:
    # daphne serves no static files itself; in development let Django do it (as runserver does).
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        # Channels' AuthMiddlewareStack, taken apart to check the session cookie's shape
        # before the session is looked up (realtime/auth.py); the Origin first of all
        # (realtime/origin.py).
        "websocket": OriginGuard(
            CookieMiddleware(
                SessionCookieGuard(
                    SessionMiddleware(
                        SessionAuthMiddleware(
                            QueryTokenAuthMiddleware(URLRouter(websocket_urlpatterns))
                        )
                    )
                )
            )
        ),
    }
)
