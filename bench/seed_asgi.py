"""Baseline (b), the seed's design: a stock Channels JsonWebsocketConsumer per socket.

Every socket joins one group on the core layer; every event is a group_send carrying the
whole queue, which the layer writes once per member and each consumer encodes and sends
itself (with Channels' per-handler database housekeeping and sync-thread hops). The
queue is sent in its smallest, redacted form (id, position, status, mine), which is the
kindest choice for this baseline in both time and bytes.

    daphne bench.seed_asgi:application
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fathomloom.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.generic.websocket import JsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from realtime.auth import QueryTokenAuthMiddleware  # noqa: E402

SEED_GROUP = "bench-seed-queue"


def whole_queue(seq: int) -> dict:
    """The seed's QueueUpdate: every active entry, for everyone ("seq" first for clients)."""
    from queue_app.events import PUBLIC_ENTRY_FIELDS
    from queue_app.selectors import active_entries

    queue = [
        {**{field: entry[field] for field in PUBLIC_ENTRY_FIELDS}, "mine": False}
        for entry in active_entries()
    ]
    return {
        "type": "QueueUpdate",
        "seq": seq,
        "update_type": "position_updated",
        "queue_length": len(queue),
        "queue": queue,
    }


class SeedQueueConsumer(JsonWebsocketConsumer):
    def connect(self) -> None:
        self.accept()
        async_group_add = self.channel_layer.group_add
        from asgiref.sync import async_to_sync

        async_to_sync(async_group_add)(SEED_GROUP, self.channel_name)
        self.send_json({**whole_queue(0), "type": "QueueSnapshot"})

    def disconnect(self, code: int) -> None:
        from asgiref.sync import async_to_sync

        async_to_sync(self.channel_layer.group_discard)(SEED_GROUP, self.channel_name)

    def queue_update(self, event: dict) -> None:
        self.send_json(event["message"])


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(
            QueryTokenAuthMiddleware(
                URLRouter([path("queue_updates", SeedQueueConsumer.as_asgi())])
            )
        ),
    }
)
