"""ASGI entry point: HTTP goes to Django, WebSockets to the realtime consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fathomloom.settings")
# A pool of database connections in the ASGI server, where each request's sync code runs
# in a thread of its own (fathomloom/settings/base.py, DATABASE_POOL).
os.environ.setdefault("DATABASE_POOL", "1")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware, SessionMiddleware  # noqa: E402
from django.conf import settings  # noqa: E402

from realtime.auth import (  # noqa: E402
    QueryTokenAuthMiddleware,
    SessionAuthMiddleware,
    SessionCookieGuard,
    TokenOrSession,
)
from realtime.daphne_io import quiet_autobahn_debug_lines, tune_gc_under_daphne  # noqa: E402
from realtime.origin import OriginGuard  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

http_app = django_asgi_app
if settings.DEBUG:
    # daphne serves no static files itself; in development let Django do it (as runserver does).
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

# Under daphne, autobahn without formatting debug lines that are not logged
# (realtime/daphne_io.py; bench/notes.md, issue 14).
quiet_autobahn_debug_lines()

sockets = URLRouter(websocket_urlpatterns)
application = ProtocolTypeRouter(
    {
        "http": http_app,
        # The Origin first of all (realtime/origin.py). Then `?token=` sockets go straight
        # to their authentication; the others through Channels' AuthMiddlewareStack, taken
        # apart to check the session cookie's shape before the session is looked up
        # (realtime/auth.py).
        "websocket": OriginGuard(
            TokenOrSession(
                token_app=QueryTokenAuthMiddleware(sockets),
                session_app=CookieMiddleware(
                    SessionCookieGuard(
                        SessionMiddleware(SessionAuthMiddleware(QueryTokenAuthMiddleware(sockets)))
                    )
                ),
            )
        ),
    }
)

# Last, with everything loaded: under daphne, the garbage collector leaves the start-up's
# objects alone and runs full collections rarely (realtime/daphne_io.py).
tune_gc_under_daphne()
