"""The WebSocket at /queue_updates: a snapshot, then every queue event, redacted per viewer.

Close codes: 4401 when the socket has no authenticated user.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from queue_app.selectors import queue_snapshot_for
from realtime.events import QUEUE_GROUP, Viewer, event_for_viewer

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
MAX_FRAME_BYTES = 64 * 1024


class QueueConsumer(AsyncWebsocketConsumer):
    groups: list[str] = []

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept first: a close before accept is a bare HTTP 403 and loses the code.
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.viewer = Viewer.of(user)
        # Join before reading the snapshot, so no event falls between the two; events the
        # snapshot already includes are dropped by seq in queue_event().
        await self.channel_layer.group_add(QUEUE_GROUP, self.channel_name)
        self.joined = True
        await self.accept()
        snapshot = await database_sync_to_async(queue_snapshot_for)(user)
        self.last_seq = snapshot["seq"]
        await self.send(text_data=json.dumps(snapshot))

    async def disconnect(self, code: int) -> None:
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(QUEUE_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None or len(text_data) > MAX_FRAME_BYTES:
            await self._error("invalid_frame", "Send JSON text frames of at most 64 KB.")
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            await self._error("invalid_json", "The frame is not JSON.")
            return
        if not isinstance(message, dict):
            await self._error("invalid_message", "A message is a JSON object with a type.")
            return
        if message.get("type") == "ping":
            await self.send(text_data='{"type": "pong"}')
            return
        await self._error("unknown_type", "Unknown message type.")

    async def queue_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        if event["seq"] <= getattr(self, "last_seq", 0):
            return
        self.last_seq = event["seq"]
        await self.send(text_data=json.dumps(event_for_viewer(event, self.viewer)))

    async def _error(self, code: str, detail: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "code": code, "detail": detail}))
